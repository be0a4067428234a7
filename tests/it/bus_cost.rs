//! What a hostile request or a stray stream entry may cost Redis: the
//! limits apply before any Redis read, a resume that ends in a reset
//! reads at most a couple of entries, an id nobody handed out is answered
//! at once, and an entry the bus cannot read is stepped over (not read
//! again and again). Each test runs its own `redis-server`, so that
//! Redis's own counters measure only this server.

use std::time::{Duration, Instant};

use sse_notify::sse::{SseConfig, Target, UserId};

use crate::cluster::OwnRedis;
use crate::resume_isolation::{Tab, app_on, drain, get, opened};

async fn redis(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

/// A counter from `INFO <section>`: the number after `field:` (or, for
/// `commandstats`, after `calls=` on the `field:` line).
async fn info(conn: &mut redis::aio::MultiplexedConnection, section: &str, field: &str) -> u64 {
    let text: String = redis::cmd("INFO")
        .arg(section)
        .query_async(conn)
        .await
        .expect("INFO");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or("calls=0");
    let number = line.strip_prefix("calls=").unwrap_or(line);
    number
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The epoch part of an event id.
fn epoch_of(id: &str) -> &str {
    id.split('-').next().expect("epoch")
}

#[tokio::test]
async fn a_made_up_old_id_costs_redis_a_couple_of_entries_and_limits_come_first() {
    let own = OwnRedis::start().await;
    let config = SseConfig {
        history_age: Duration::from_secs(1),
        per_user_max: 2,
        ..SseConfig::default()
    };
    let (base, notifier) = app_on(config, Some("cost"), &own.url()).await;
    let mut conn = redis(&own.url()).await;
    let (stream, _, first) = opened(get(&base, &Tab::new("probe"), "", None, None).await).await;
    drop(stream);
    // ~2 MB in the stream, for someone else, older than the history.
    let payload = "x".repeat(2000);
    for _ in 0..1000 {
        notifier
            .send_json(&Target::user(UserId::new("someone")), "m", &payload)
            .expect("send");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let made_up = format!("{}-1-0", epoch_of(&first));
    let before = info(&mut conn, "stats", "total_net_output_bytes").await;
    let (mut stream, _, _) =
        opened(get(&base, &Tab::new("probe"), "", Some(&made_up), None).await).await;
    let got = drain(&mut stream).await;
    let cost = info(&mut conn, "stats", "total_net_output_bytes").await - before;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, "sse-reset");
    drop(stream);
    eprintln!("Redis output for one resume from a made-up old id: {cost} bytes");
    assert!(
        cost < 64 * 1024,
        "one reset resume made Redis send {cost} bytes"
    );

    // A user at the limit is refused before anything is read.
    let hog = Tab::new("hog");
    let _held = [
        opened(get(&base, &hog, "", None, None).await).await,
        opened(get(&base, &hog, "", None, None).await).await,
    ];
    let before = info(&mut conn, "stats", "total_net_output_bytes").await;
    for _ in 0..4 {
        let response = get(&base, &hog, "", Some(&first), None).await;
        assert_eq!(response.status(), 429);
    }
    let cost = info(&mut conn, "stats", "total_net_output_bytes").await - before;
    assert!(
        cost < 16 * 1024,
        "refused resumes made Redis send {cost} bytes"
    );
    notifier.bus().stop();
}

#[tokio::test]
async fn an_id_from_the_future_is_answered_at_once_and_limits_come_first() {
    let own = OwnRedis::start().await;
    let config = SseConfig {
        per_user_max: 2,
        ..SseConfig::default()
    };
    let (base, notifier) = app_on(config, Some("future"), &own.url()).await;
    let (stream, _, first) = opened(get(&base, &Tab::new("probe"), "", None, None).await).await;
    drop(stream);
    let ahead = sse_notify::sse::unix_millis_now() + 1_000_000_000;
    let future = format!("{}-{ahead}-0", epoch_of(&first));

    // The bus's timeout is 2 s: a wait for this id would take that long.
    let started = Instant::now();
    let (mut stream, _, _) =
        opened(get(&base, &Tab::new("probe"), "", Some(&future), None).await).await;
    let (_, name, _) = stream
        .next_with_id(Duration::from_secs(3))
        .await
        .expect("an event");
    let answered = started.elapsed();
    assert_eq!(name, "sse-reset");
    assert!(
        answered < Duration::from_secs(1),
        "answered after {answered:?}"
    );
    drop(stream);

    let hog = Tab::new("hog");
    let _held = [
        opened(get(&base, &hog, "", None, None).await).await,
        opened(get(&base, &hog, "", None, None).await).await,
    ];
    let started = Instant::now();
    let refused =
        futures::future::join_all((0..50).map(|_| get(&base, &hog, "", Some(&future), None))).await;
    assert!(refused.iter().all(|r| r.status() == 429));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused after {:?}",
        started.elapsed()
    );
    notifier.bus().stop();
}

#[tokio::test]
async fn a_foreign_entry_is_stepped_over_not_read_again_and_again() {
    let own = OwnRedis::start().await;
    let (base, notifier) = app_on(SseConfig::default(), Some("foreign"), &own.url()).await;
    let mut conn = redis(&own.url()).await;
    let reader = Tab::new("reader");
    let (mut stream, _, _) = opened(get(&base, &reader, "", None, None).await).await;

    for fields in [vec![("k", "o")], vec![("h", "zz"), ("k", "o")]] {
        let mut xadd = redis::cmd("XADD");
        xadd.arg("{foreign}:stream").arg("*");
        for (k, v) in fields {
            xadd.arg(k).arg(v);
        }
        let _: String = xadd.query_async(&mut conn).await.expect("XADD");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = info(&mut conn, "commandstats", "cmdstat_xread").await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let reads = info(&mut conn, "commandstats", "cmdstat_xread").await - before;
        assert!(
            reads < 10,
            "{reads} XREADs in one second with a foreign entry last"
        );
    }
    // The reader still delivers.
    notifier
        .send_json(&Target::user(UserId::new("reader")), "m", &"after")
        .expect("send");
    let got = drain(&mut stream).await;
    assert_eq!(got, [("m".to_string(), r#""after""#.to_string())]);
    notifier.bus().stop();
}
