//! Each process reads only what its own clients need (`bus.follow =
//! own`, the default): events for a user reach only the processes that
//! hold a stream of that user, counted by the bus's own figures and by
//! Redis's list of subscribed channels; a user's first stream on a
//! process, a resume there from another process and a lost subscription
//! all get exactly what was sent, once, in order.

use std::time::{Duration, Instant};

use super::{Cluster, Instance, OwnRedis, redis_at, send, ticks_until};
use crate::support::{SseStream, User, login_on, signup_on};

const TOKEN: &str = "own-read";

async fn metrics(base: &str) -> std::collections::BTreeMap<String, f64> {
    crate::support::metrics(base, TOKEN).await
}

/// Entries of the stream `instance` has read.
async fn entries_read(instance: &Instance) -> f64 {
    metrics(&instance.base).await["sse_bus_entries_read_total"]
}

async fn followed_users(instance: &Instance) -> f64 {
    metrics(&instance.base).await["sse_bus_followed_users"]
}

/// The user channels subscribed in Redis under the cluster's prefix.
async fn subscribed_user_channels(redis_url: &str, prefix: &str) -> usize {
    let mut conn = redis_at(redis_url).await;
    let channels: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .arg(format!("{{{prefix}}}:u:*"))
        .query_async(&mut conn)
        .await
        .expect("PUBSUB CHANNELS");
    channels.len()
}

fn counting(mut cluster: Cluster) -> Cluster {
    cluster
        .env
        .push(("METRICS_TOKEN".to_string(), TOKEN.to_string()));
    cluster
        .env
        .push(("BUS_UNFOLLOW_AFTER".to_string(), "1s".to_string()));
    cluster
}

/// An admin who sends `tick` events to users by name.
async fn sender(cluster: &Cluster, on: &Instance) -> User {
    signup_on(&on.base, "sender").await;
    cluster.grant_admin("sender");
    login_on(&on.base, "sender").await
}

/// No `tick` within a short wait.
async fn no_tick(stream: &mut SseStream) {
    while let Some((_, name, data)) = stream.next_with_id(Duration::from_millis(500)).await {
        assert_ne!(name, "tick", "an event for someone else: {data}");
    }
}

fn numbered(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

fn messages(got: &[(String, String)]) -> Vec<String> {
    got.iter().map(|(_, m)| m.clone()).collect()
}

#[tokio::test]
async fn a_process_reads_only_the_users_it_holds_streams_of() {
    let cluster = counting(Cluster::new().await);
    let (a, b, c) = (
        cluster.start("a").await,
        cluster.start("b").await,
        cluster.start("c").await,
    );
    let ann = signup_on(&a.base, "ann").await;
    let bob = signup_on(&b.base, "bob").await;
    let sender_on_c = sender(&cluster, &c).await;
    let sender_on_a = sender_on_c.at(&a.base);
    let (mut ann_stream, _) = ann.open("").await;
    let (mut bob_stream, _) = bob.open("").await;
    assert_eq!(followed_users(&a).await, 1.0);
    assert_eq!(followed_users(&b).await, 1.0);
    assert_eq!(followed_users(&c).await, 0.0);
    assert_eq!(
        subscribed_user_channels(&cluster.redis_url, &cluster.prefix).await,
        2
    );
    let before = [
        entries_read(&a).await,
        entries_read(&b).await,
        entries_read(&c).await,
    ];

    // 100 to ann through C and 100 to bob through A, at the same time.
    let to_ann = numbered("ann-", 0..100);
    let to_bob = numbered("bob-", 0..100);
    let (sending_ann, sending_bob) = {
        let (via, list) = (sender_on_c.clone(), to_ann.clone());
        let ann_sends = tokio::spawn(async move {
            for m in list {
                send(&via, "ann", "tick", &m).await;
            }
        });
        let (via, list) = (sender_on_a.clone(), to_bob.clone());
        let bob_sends = tokio::spawn(async move {
            for m in list {
                send(&via, "bob", "tick", &m).await;
            }
        });
        (ann_sends, bob_sends)
    };
    assert_eq!(
        messages(&ticks_until(&mut ann_stream, "ann-99").await),
        to_ann
    );
    assert_eq!(
        messages(&ticks_until(&mut bob_stream, "bob-99").await),
        to_bob
    );
    sending_ann.await.expect("ann's sender");
    sending_bob.await.expect("bob's sender");
    no_tick(&mut ann_stream).await;
    no_tick(&mut bob_stream).await;

    let after = [
        entries_read(&a).await,
        entries_read(&b).await,
        entries_read(&c).await,
    ];
    let read: Vec<f64> = after.iter().zip(before).map(|(x, y)| x - y).collect();
    // A published bob's events and C ann's: neither read back what its
    // clients do not need.
    assert_eq!(read, vec![100.0, 100.0, 0.0], "entries read by a, b, c");

    // What is addressed wider reaches every process.
    let (status, json) = sender_on_c
        .post_json("/api/sse/broadcast", r#"{"event":"tick","message":"all"}"#)
        .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        messages(&ticks_until(&mut ann_stream, "all").await),
        ["all"]
    );
    let bob_last = ticks_until(&mut bob_stream, "all").await;
    assert_eq!(messages(&bob_last), ["all"]);
    let wide = [
        entries_read(&a).await,
        entries_read(&b).await,
        entries_read(&c).await,
    ];
    let read: Vec<f64> = wide.iter().zip(after).map(|(x, y)| x - y).collect();
    assert_eq!(read, vec![1.0, 1.0, 1.0], "a broadcast is read everywhere");

    // Bob's last stream on B ends: B stops following him after
    // `bus.unfollow_after`, and reads none of his events any more.
    drop(bob_stream);
    let deadline = Instant::now() + Duration::from_secs(10);
    while followed_users(&b).await > 0.0 {
        assert!(Instant::now() < deadline, "B still follows bob");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        subscribed_user_channels(&cluster.redis_url, &cluster.prefix).await,
        1
    );
    let quiet = entries_read(&b).await;
    for m in numbered("late-", 0..10) {
        send(&sender_on_a, "bob", "tick", &m).await;
    }
    send(&sender_on_a, "ann", "tick", "marker").await;
    ticks_until(&mut ann_stream, "marker").await;
    assert_eq!(
        entries_read(&b).await,
        quiet,
        "B read bob's events after he left"
    );

    // He comes back on B from his last id: the events sent meanwhile are
    // read from the stream, once.
    let (mut back, _) = bob.resume("", &bob_last[0].0).await;
    assert_eq!(
        messages(&ticks_until(&mut back, "late-9").await),
        numbered("late-", 0..10)
    );
    no_tick(&mut back).await;
    drop((a, b, c));
    cluster.finish().await;
}

#[tokio::test]
async fn a_resume_on_a_process_new_to_the_user_misses_nothing_and_repeats_nothing() {
    let cluster = counting(Cluster::new().await);
    let (a, b) = (cluster.start("a").await, cluster.start("b").await);
    let ann = signup_on(&a.base, "ann").await;
    let bob = signup_on(&b.base, "bob").await;
    let via = sender(&cluster, &a).await;
    let (mut on_a, _) = ann.open("").await;
    // Bob is on B all along: nothing of ann's may reach him.
    let (mut bob_stream, _) = bob.open("").await;
    assert_eq!(followed_users(&b).await, 1.0);

    let all = numbered("m-", 0..300);
    let sending = {
        let (via, list) = (via.clone(), all.clone());
        tokio::spawn(async move {
            for m in list {
                send(&via, "ann", "tick", &m).await;
            }
        })
    };
    // A's stream takes the first hundred, then the browser moves to B
    // (which has never followed ann) while the sends go on.
    let first = ticks_until(&mut on_a, "m-99").await;
    let last_id = first.last().expect("a tick").0.clone();
    drop(on_a);
    let (mut on_b, _) = ann.at(&b.base).resume("", &last_id).await;
    let rest = ticks_until(&mut on_b, "m-299").await;
    sending.await.expect("sender");
    no_tick(&mut on_b).await;
    let mut union = messages(&first);
    union.extend(messages(&rest));
    assert_eq!(union, all, "every event once, in order, across the move");
    no_tick(&mut bob_stream).await;

    // Bob resuming on B from one of ann's ids gets none of her events.
    let (mut bob_again, _) = bob.resume("", &last_id).await;
    no_tick(&mut bob_again).await;
    // Nor from made-up ids: the stream's epoch with a position nobody
    // handed out (a barrier, then a reset), or another epoch.
    let epoch = &last_id[..16];
    for made_up in [
        format!("{epoch}-99999999999999-0"),
        "0123456789abcdef-1-0".to_string(),
    ] {
        let (mut made_up_stream, _) = bob.resume("", &made_up).await;
        no_tick(&mut made_up_stream).await;
    }
    drop((a, b));
    cluster.finish().await;
}

#[tokio::test]
async fn a_lost_subscription_is_repaired_from_the_stream() {
    let redis = OwnRedis::start().await;
    let cluster = counting(Cluster::on(&redis.url()).await);
    let (a, b) = (cluster.start("a").await, cluster.start("b").await);
    let ann = signup_on(&b.base, "ann").await;
    let via = sender(&cluster, &a).await;
    let (mut stream, _) = ann.open("").await;

    let all = numbered("m-", 0..300);
    let sending = {
        let (via, list) = (via.clone(), all.clone());
        tokio::spawn(async move {
            for m in list {
                send(&via, "ann", "tick", &m).await;
            }
        })
    };
    let mut got = ticks_until(&mut stream, "m-50").await;
    // Every subscription connection is cut (B's among them) while the
    // sends go on; B reads what it missed from the stream.
    let mut conn = redis_at(&redis.url()).await;
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .expect("CLIENT KILL");
    assert!(killed >= 2, "both processes' subscriptions: {killed}");
    got.extend(ticks_until(&mut stream, "m-299").await);
    sending.await.expect("sender");
    no_tick(&mut stream).await;
    assert_eq!(messages(&got), all, "every event once, in order");
    drop((a, b));
    cluster.finish().await;
}

#[tokio::test]
async fn barriers_under_a_burst_lose_nothing_for_streams_already_open() {
    let cluster = counting(Cluster::new().await);
    let (a, b) = (cluster.start("a").await, cluster.start("b").await);
    let via = sender(&cluster, &a).await;
    let watcher = signup_on(&b.base, "watcher").await;
    let (mut watching, _) = watcher.open("").await;
    // Eight senders broadcasting at once through A while forty users open
    // their first stream on B (each a barrier there).
    let senders: Vec<_> = (0..8)
        .map(|s| {
            let via = via.clone();
            tokio::spawn(async move {
                for i in 0..100 {
                    let body =
                        serde_json::json!({ "event": "tick", "message": format!("{s}-{i}") });
                    let (status, json) =
                        via.post_json("/api/sse/broadcast", &body.to_string()).await;
                    assert_eq!(status, 200, "{json}");
                }
            })
        })
        .collect();
    let mut newcomers = Vec::new();
    for n in 0..40 {
        let user = signup_on(&b.base, &format!("new{n}")).await;
        newcomers.push(user.open("").await.0);
    }
    for sending in senders {
        sending.await.expect("sender");
    }
    let mut last = [None::<usize>; 8];
    for _ in 0..800 {
        let (_, name, data) = watching
            .next_with_id(Duration::from_secs(10))
            .await
            .expect("every broadcast reaches the stream opened before the burst");
        assert_eq!(name, "tick", "{data}");
        let json: serde_json::Value = serde_json::from_str(&data).expect("JSON");
        let message = json["message"].as_str().expect("message");
        let (s, i) = message.split_once('-').expect("sender-count");
        let (s, i): (usize, usize) = (s.parse().expect("s"), i.parse().expect("i"));
        assert_eq!(
            last[s].map_or(0, |l| l + 1),
            i,
            "sender {s}'s order, once each"
        );
        last[s] = Some(i);
    }
    no_tick(&mut watching).await;
    drop(newcomers);
    drop((a, b));
    cluster.finish().await;
}

#[tokio::test]
async fn a_quiet_resume_on_a_new_process_continues_without_a_reset() {
    let cluster = counting(Cluster::new().await);
    let a = cluster.start("a").await;
    let ann = signup_on(&a.base, "ann").await;
    let bob = signup_on(&a.base, "bob").await;
    let via = sender(&cluster, &a).await;
    let (mut on_a, _) = ann.open("").await;
    send(&via, "ann", "tick", "only").await;
    let got = ticks_until(&mut on_a, "only").await;
    // The newest entry is a kick (bob signs out), not an event; then B
    // starts, knowing nothing of ann.
    let signed_out = bob
        .client
        .post(bob.url("/api/auth/logout"))
        .send()
        .await
        .expect("POST logout");
    assert!(signed_out.status().is_success() || signed_out.status().is_redirection());
    let b = cluster.start("b").await;
    drop(on_a);
    let (mut on_b, _) = ann.at(&b.base).resume("", &got[0].0).await;
    no_tick(&mut on_b).await;
    send(&via, "ann", "tick", "next").await;
    assert_eq!(messages(&ticks_until(&mut on_b, "next").await), ["next"]);
    drop((a, b));
    cluster.finish().await;
}

#[tokio::test]
async fn processes_reading_the_whole_stream_and_their_own_share_one_bus() {
    let cluster = counting(Cluster::new().await);
    let a = cluster.start_with("a", &[("BUS_FOLLOW", "all")]).await;
    let b = cluster.start("b").await;
    let ann = signup_on(&b.base, "ann").await;
    let bob = signup_on(&a.base, "bob").await;
    let via = sender(&cluster, &a).await;
    let (mut ann_on_b, _) = ann.open("").await;
    let (mut bob_on_a, _) = bob.open("").await;
    send(&via, "ann", "tick", "from-all").await;
    send(&via.at(&b.base), "bob", "tick", "from-own").await;
    assert_eq!(
        messages(&ticks_until(&mut ann_on_b, "from-all").await),
        ["from-all"]
    );
    assert_eq!(
        messages(&ticks_until(&mut bob_on_a, "from-own").await),
        ["from-own"]
    );
    no_tick(&mut ann_on_b).await;
    no_tick(&mut bob_on_a).await;
    // A (`all`) wrote its entry field by field, as versions before the
    // own-clients read can read it; B wrote the one body.
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
        .arg(cluster.stream_key())
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(2)
        .query_async(&mut cluster.redis().await)
        .await
        .expect("XREVRANGE");
    let names = |fields: &[(String, String)]| -> Vec<String> {
        fields.iter().map(|(k, _)| k.clone()).collect()
    };
    assert_eq!(names(&entries[0].1), ["h", "b"], "from B (own)");
    let from_a = names(&entries[1].1);
    assert!(
        from_a.starts_with(&["h".to_string(), "u".to_string(), "k".to_string()])
            && !from_a.contains(&"b".to_string()),
        "from A (all): {from_a:?}"
    );
    drop((a, b));
    cluster.finish().await;
}

#[tokio::test]
async fn a_stored_notification_is_not_sent_again_after_a_move_and_back() {
    let cluster = counting(Cluster::new().await);
    let (a, b) = (cluster.start("a").await, cluster.start("b").await);
    let ann = signup_on(&a.base, "ann").await;
    let via = sender(&cluster, &a).await;
    let (mut on_a, _) = ann.open("").await;
    send(&via, "ann", "notification", "stored").await;
    let (stored_id, name, _) = on_a
        .next_with_id(Duration::from_secs(5))
        .await
        .expect("the stored notification");
    assert_eq!(name, "notification");
    drop(on_a);
    // To B, which has never followed ann (nor seen her stored row), then a
    // live event there, then back to A from that event's id.
    let (mut on_b, _) = ann.at(&b.base).resume("", &stored_id).await;
    send(&via, "ann", "tick", "on-b").await;
    let on_b_id = ticks_until(&mut on_b, "on-b").await[0].0.clone();
    drop(on_b);
    let (mut back, _) = ann.resume("", &on_b_id).await;
    while let Some((_, name, data)) = back.next_with_id(Duration::from_millis(800)).await {
        assert_ne!(name, "notification", "sent again: {data}");
    }
    drop((a, b));
    cluster.finish().await;
}

#[tokio::test]
async fn a_stream_deleted_in_a_quiet_moment_resets_its_clients_once() {
    let cluster = counting(Cluster::new().await);
    let (a, b) = (cluster.start("a").await, cluster.start("b").await);
    let ann = signup_on(&a.base, "ann").await;
    let via = sender(&cluster, &b).await;
    let (mut stream, _) = ann.open("").await;
    send(&via, "ann", "tick", "before").await;
    ticks_until(&mut stream, "before").await;
    // The stream's key goes (its epoch key stays); nothing is sent for a
    // few of the bus's quiet checks.
    cluster.delete_stream().await;
    let quiet_until = Instant::now() + Duration::from_secs(3);
    let mut seen = Vec::new();
    while let Some(left) = quiet_until.checked_duration_since(Instant::now()) {
        match stream.next_with_id(left).await {
            Some((_, name, _)) => seen.push(name),
            None => break,
        }
    }
    assert!(seen.is_empty(), "nothing while quiet: {seen:?}");
    // The next send opens a new history: one reset, then the event.
    send(&via, "ann", "tick", "after").await;
    let mut names = Vec::new();
    while let Some((_, name, _)) = stream.next_with_id(Duration::from_secs(2)).await {
        names.push(name);
    }
    assert_eq!(names, ["sse-reset", "tick"]);
    drop((a, b));
    cluster.finish().await;
}
