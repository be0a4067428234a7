//! Operations on a real server: `/healthz`, `/readyz` (a database that
//! stops answering), `/metrics` (exact counters after a known sequence,
//! the token), and the per-user send rate.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Backend, TestServer, User};

const TOKEN: &str = "scrape-me";

/// `/metrics` on the main address, with the token.
async fn metrics(server: &TestServer) -> String {
    let response = reqwest::Client::new()
        .get(server.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    response.text().await.expect("body")
}

/// Every sample line, `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no series {series}; have {:?}", samples.keys()))
}

/// Waits until `series` has `want` (counts settle after a stream ends).
async fn until_value(server: &TestServer, series: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = value(&samples(&metrics(server).await), series);
        if now == want {
            return;
        }
        assert!(Instant::now() < deadline, "{series} is {now}, not {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn send(from: &User, to: &str, event: &str, message: &str) -> u16 {
    let body = serde_json::json!({ "user": to, "event": event, "message": message });
    from.post_json("/api/sse/test", &body.to_string()).await.0
}

#[tokio::test]
async fn probes_answer_without_a_session() {
    let server = TestServer::start(&[]).await;
    let client = reqwest::Client::new();
    let health = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(health.headers().get("set-cookie").is_none());
    let ready = client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert!(ready.headers().get("set-cookie").is_none());
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["ready"], true);
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(body["checks"]["draining"], false);
    // No token configured: not on the main address.
    let metrics = client.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 404);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn readyz_names_a_database_that_stopped_answering() {
    use sqlx::Connection;
    let server = TestServer::start_on(Backend::Postgres, &[]).await;
    let url = server_db_url(&server);
    let name = url.rsplit('/').next().unwrap().to_string();
    let admin_url = format!("{}/postgres", url.rsplit_once('/').unwrap().0);
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    // The server's connections are cut and no new ones are allowed: to
    // the app, the database is down.
    for sql in [
        format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"),
        format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"),
    ] {
        sqlx::query(&sql).execute(&mut admin).await.unwrap();
    }
    let client = reqwest::Client::new();
    let ready = client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["ready"], false);
    assert_eq!(body["failing"], serde_json::json!(["database"]));
    assert_ne!(body["checks"]["database"], "ok");
    // Alive all the same.
    let health = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .execute(&mut admin)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = client.get(server.url("/readyz")).send().await.unwrap();
        if ready.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "ready again once it answers");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = admin.close().await;
    server.shutdown().await.unwrap();
}

fn server_db_url(server: &TestServer) -> String {
    server.env_var("DATABASE_URL").expect("a Postgres server")
}

#[tokio::test]
async fn metrics_count_exactly_what_happened() {
    let server = TestServer::start(&[
        ("METRICS_TOKEN", TOKEN),
        ("SSE_PER_USER_MAX", "2"),
        ("SSE_QUEUE_LEN", "4"),
    ])
    .await;
    let client = reqwest::Client::new();
    for auth in [None, Some("wrong")] {
        let mut request = client.get(server.url("/metrics"));
        if let Some(token) = auth {
            request = request.bearer_auth(token);
        }
        let refused = request.send().await.unwrap();
        assert_eq!(refused.status(), 401);
        let body: serde_json::Value = refused.json().await.unwrap();
        assert_eq!(body["error"], "metrics_token");
    }
    let alice = server.signup("alice").await;
    let bob = server.signup("bob").await;
    let carol = crate::support::signup_cookie(&server.base, "carol").await;
    let (mut one, _) = alice.open("").await;
    let (mut two, _) = alice.open("").await;
    assert_eq!(alice.connect("").await.status(), 429);
    for i in 0..3 {
        assert_eq!(send(&bob, "alice", "ping", &format!("m{i}")).await, 200);
    }
    for stream in [&mut one, &mut two] {
        for i in 0..3 {
            let (name, data) = stream.next_event(Duration::from_secs(5)).await.unwrap();
            assert_eq!(name, "ping");
            assert!(data.contains(&format!("m{i}")));
        }
    }
    let m = samples(&metrics(&server).await);
    assert_eq!(value(&m, "sse_streams_open"), 2.0);
    assert_eq!(value(&m, "sse_connects_total"), 2.0);
    assert_eq!(
        value(
            &m,
            r#"sse_refusals_total{cause="too_many_connections",status="429"}"#
        ),
        1.0
    );
    assert_eq!(
        value(&m, r#"sse_events_published_total{target="user"}"#),
        3.0
    );
    assert_eq!(
        value(&m, r#"sse_events_published_total{target="all"}"#),
        0.0
    );
    assert_eq!(value(&m, "sse_events_delivered_total"), 6.0);
    assert_eq!(value(&m, "sse_send_seconds_count"), 3.0);
    assert_eq!(value(&m, "sse_queue_overflows_total"), 0.0);
    assert_eq!(value(&m, "sse_bus_connected"), 1.0);
    assert_eq!(value(&m, "sse_draining"), 0.0);
    assert!(value(&m, r#"db_query_seconds_count{op="session_load"}"#) >= 3.0);

    // Carol's stream is opened on a socket that is never read: big events
    // fill the socket, then her queue of 4, then she is cut off.
    let mut raw = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let cookie = carol;
    raw.write_all(
        format!(
            "GET /api/sse HTTP/1.1\r\nhost: {}\r\naccept: text/event-stream\r\ncookie: {cookie}\r\n\r\n",
            server.addr()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = [0u8; 12];
    raw.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    until_value(&server, "sse_streams_open", 3.0).await;
    let big = "x".repeat(1900);
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body = serde_json::json!({ "user": "carol", "event": "bulk", "message": big });
        let (status, _) = bob.post_json("/api/sse/test", &body.to_string()).await;
        assert_eq!(status, 200);
        sent += 1;
        let m = samples(&metrics(&server).await);
        if value(&m, "sse_queue_overflows_total") == 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no overflow after {sent} sends");
    }
    until_value(&server, "sse_streams_open", 2.0).await;
    let m = samples(&metrics(&server).await);
    assert_eq!(
        value(&m, r#"sse_events_published_total{target="user"}"#),
        3.0 + f64::from(sent)
    );
    assert_eq!(
        value(&m, r#"sse_disconnects_total{reason="queue_overflow"}"#),
        1.0
    );
    assert_eq!(value(&m, "sse_connects_total"), 3.0);
    drop(raw);
    drop((one, two));
    until_value(
        &server,
        r#"sse_disconnects_total{reason="client_closed"}"#,
        2.0,
    )
    .await;
    until_value(&server, "sse_streams_open", 0.0).await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn sends_beyond_a_users_rate_get_429_with_retry_after() {
    let server = TestServer::start(&[
        ("SERVER_SENDS_PER_USER", "3"),
        ("SERVER_SEND_WINDOW", "1m"),
        ("METRICS_TOKEN", TOKEN),
    ])
    .await;
    let bob = server.signup("bob").await;
    let eve = server.signup("eve").await;
    server.signup("alice").await;
    for i in 0..3 {
        assert_eq!(send(&eve, "alice", "ping", &format!("{i}")).await, 200);
    }
    let response = eve
        .client
        .post(server.url("/api/sse/test"))
        .header("content-type", "application/json")
        .body(r#"{"user":"alice","event":"ping","message":"one more"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "send_rate");
    // Another user's rate is their own.
    assert_eq!(send(&bob, "alice", "ping", "fine").await, 200);
    let m = samples(&metrics(&server).await);
    assert_eq!(
        value(&m, r#"sse_refusals_total{cause="send_rate",status="429"}"#),
        1.0
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn metrics_on_their_own_address_need_no_token() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let server = TestServer::start(&[("METRICS_ADDR", &addr)]).await;
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("# TYPE sse_streams_open gauge"), "{text}");
    let other = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    server.shutdown().await.unwrap();
}

/// Series are fixed by the code, not by traffic: 10 000 users, each with
/// a stream, a tag, an event name of their own and an end, add none.
#[tokio::test]
async fn the_number_of_series_does_not_grow_with_users() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use sse_notify::ops::db_timing::DbTimings;
    use sse_notify::ops::exposition::Exposition;
    use sse_notify::sse::{
        DisconnectReason, Identity, Notifier, SessionId, SseConfig, Tag, Target, UserId,
    };

    let notifier = Notifier::new(SseConfig {
        max_clients: 20_000,
        per_address_max: 20_000,
        ..SseConfig::default()
    });
    let exposition = Exposition::new(
        &notifier,
        &DbTimings::default(),
        Arc::new(AtomicBool::new(false)),
    );
    let series = |text: &str| {
        text.lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .map(|line| line.rsplit_once(' ').unwrap().0.to_string())
            .collect::<std::collections::BTreeSet<String>>()
    };
    let before = series(&exposition.encode().unwrap());
    // Valid exposition: one TYPE line per metric name.
    let text = exposition.encode().unwrap();
    let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
    let names: std::collections::BTreeSet<&str> =
        types.iter().map(|l| l.split(' ').nth(2).unwrap()).collect();
    assert_eq!(types.len(), names.len(), "{types:?}");
    let registry = notifier.registry();
    let mut open = Vec::new();
    for i in 0..10_000 {
        let user = UserId::new(format!("user-{i}"));
        let identity = Identity {
            user: user.clone(),
            username: format!("name-{i}"),
            session: SessionId::new(format!("session-{i}")),
            tags: vec![Tag::parse(&format!("team:t{i}")).unwrap()],
            since: None,
        };
        let mut registration = registry
            .register(&identity, vec![Tag::parse(&format!("page:p{i}")).unwrap()])
            .unwrap();
        notifier
            .send_json(&Target::user(user), &format!("event-{i}"), &i)
            .unwrap();
        assert!(registration.try_next().is_some());
        if i % 2 == 0 {
            registry.disconnect(registration.id(), DisconnectReason::Kicked);
        } else {
            open.push(registration);
        }
    }
    let text = exposition.encode().unwrap();
    let after = series(&text);
    assert_eq!(before, after, "no series added by traffic");
    let m = samples(&text);
    assert_eq!(value(&m, "sse_streams_open"), 5000.0);
    assert_eq!(
        value(&m, r#"sse_events_published_total{target="user"}"#),
        10_000.0
    );
    assert_eq!(value(&m, "sse_send_seconds_count"), 10_000.0);
    drop(open);
    let m = samples(&exposition.encode().unwrap());
    assert_eq!(
        value(&m, r#"sse_disconnects_total{reason="kicked"}"#),
        5000.0
    );
    assert_eq!(
        value(&m, r#"sse_disconnects_total{reason="client_closed"}"#),
        5000.0
    );
}
