//! A stream request still on its way when its sign-in ends is refused:
//! it never registers to stream on behalf of a session that is gone.

use std::time::Duration;

use super::OwnRedis;
use crate::support::TestServer;

#[tokio::test]
async fn a_stream_waiting_for_the_bus_when_its_session_signs_out_is_refused() {
    // Redis is not up yet: a stream request of a process that just
    // started waits (up to `bus.timeout`) for the bus's first read.
    let mut own = OwnRedis::not_started();
    let url = own.url();
    let server = TestServer::start(&[
        ("BUS_URL", url.as_str()),
        ("BUS_TIMEOUT", "20s"),
        ("BUS_PREFIX", "sign-out"),
    ])
    .await;
    let ann = server.signup("anns").await;
    let waiting = {
        let ann = ann.at(&server.base);
        tokio::spawn(async move { ann.connect("").await })
    };
    // The request has read its identity and is waiting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "the request should still wait");
    let signed_out = ann
        .client
        .post(server.url("/api/auth/logout"))
        .send()
        .await
        .expect("POST logout");
    assert!(signed_out.status().is_success() || signed_out.status().is_redirection());
    // The bus comes up: the wait ends, the request goes on to register.
    own.restart().await;
    let response = tokio::time::timeout(Duration::from_secs(25), waiting)
        .await
        .expect("answered")
        .expect("task");
    assert_eq!(response.status(), 401, "a stream for a session that ended");
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["error"], "session_ended");
}

/// A sign-out through one process ends, at once, the session that stream
/// connects on another process remember (`auth.stream_session_cache`):
/// its open stream ends, and the kick makes the other process forget it,
/// so its next connect reads the database again and is refused.
#[tokio::test]
async fn a_sign_out_on_one_process_ends_what_another_remembers() {
    use crate::stream_sessions::{connect_with, session_loads, sign_out};
    use crate::support::{SseStream, signup_cookie};

    let cluster = counting_sessions(super::redis_url()).await;
    let a = cluster.start("a").await;
    let b = cluster.start("b").await;
    let ann = signup_cookie(&a.base, "rememberedann").await;
    let before = session_loads(&b.base).await;
    for _ in 0..3 {
        assert_eq!(connect_with(&b.base, &ann).await.status(), 200);
    }
    assert_eq!(session_loads(&b.base).await - before, 1.0, "B remembers");
    let mut open = SseStream::new(connect_with(&b.base, &ann).await);
    let (name, _) = open
        .next_event(Duration::from_secs(2))
        .await
        .expect("connected");
    assert_eq!(name, "connected");

    sign_out(&a.base, &ann).await;
    assert!(open.ends_within(Duration::from_secs(2)).await);
    let before = session_loads(&b.base).await;
    for _ in 0..2 {
        let response = connect_with(&b.base, &ann).await;
        assert_eq!(response.status(), 401, "a session signed out on A");
        let body: serde_json::Value = response.json().await.expect("JSON");
        assert_eq!(body["error"], "unauthenticated", "{body}");
    }
    assert_eq!(
        session_loads(&b.base).await - before,
        2.0,
        "B forgot the session at the kick and read the database"
    );
    drop((a, b));
    cluster.finish().await;
}

/// While a process cannot reach Redis, kicks from the others may not
/// reach it: it remembers no session then, so a sign-out elsewhere still
/// refuses the next connect there (the database says so).
#[tokio::test]
async fn without_the_bus_nothing_is_remembered() {
    use crate::stream_sessions::{connect_with, session_loads, sign_out};
    use crate::support::signup_cookie;

    let mut own = OwnRedis::start().await;
    let cluster = counting_sessions(own.url()).await;
    let a = cluster.start("a").await;
    let b = cluster.start("b").await;
    let ann = signup_cookie(&a.base, "busdownann").await;
    assert_eq!(connect_with(&b.base, &ann).await.status(), 200);
    let before = session_loads(&b.base).await;
    assert_eq!(connect_with(&b.base, &ann).await.status(), 200);
    assert_eq!(session_loads(&b.base).await - before, 0.0, "remembered");

    own.stop();
    // B notices (its reader's next read fails within `bus.timeout`).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let before = session_loads(&b.base).await;
        assert_eq!(connect_with(&b.base, &ann).await.status(), 200);
        if session_loads(&b.base).await - before == 1.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "B still used what it remembered 10 s after Redis went away"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The kick of this sign-out cannot reach B; the database refuses.
    sign_out(&a.base, &ann).await;
    let response = connect_with(&b.base, &ann).await;
    assert_eq!(
        response.status(),
        401,
        "signed out on A while Redis is away"
    );
    drop((a, b));
    cluster.finish().await;
}

/// A cluster on `redis_url` whose processes show their session reads
/// (`/metrics` with the stream-session tests' token).
async fn counting_sessions(redis_url: String) -> super::Cluster {
    let mut cluster = super::Cluster::on(&redis_url).await;
    cluster.env.push((
        "METRICS_TOKEN".to_string(),
        crate::stream_sessions::TOKEN.to_string(),
    ));
    cluster
}
