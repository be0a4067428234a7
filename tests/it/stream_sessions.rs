//! Stream connects remember who a session is for a few seconds
//! (`auth.stream_session_cache`): the reconnects of one sign-in read the
//! database once, and a sign-out, a new sign-in or a made-up cookie still
//! gets nothing, at once. Across processes: `cluster::sign_out`.

use std::time::Duration;

use crate::support::{Backend, TestServer, signup_cookie};

pub const TOKEN: &str = "stream-sessions";

/// The server's count of session reads from the database.
pub async fn session_loads(base: &str) -> f64 {
    crate::support::metrics(base, TOKEN)
        .await
        .get(r#"db_query_seconds_count{op="session_load"}"#)
        .copied()
        .expect("the session_load series")
}

/// `GET /api/sse` with a raw cookie header.
pub async fn connect_with(base: &str, cookie: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{base}/api/sse"))
        .header("accept", "text/event-stream")
        .header("cookie", cookie)
        .send()
        .await
        .expect("GET /api/sse")
}

/// Opens and drops a stream; its status.
async fn connect_once(base: &str, cookie: &str) -> u16 {
    connect_with(base, cookie).await.status().as_u16()
}

pub async fn sign_out(base: &str, cookie: &str) {
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(format!("{base}/api/auth/logout"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("POST logout");
    assert!(
        response.status().is_success() || response.status().is_redirection(),
        "logout: {}",
        response.status()
    );
}

async fn refused(base: &str, cookie: &str, what: &str) {
    let response = connect_with(base, cookie).await;
    assert_eq!(response.status(), 401, "{what}");
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert!(body["error"].is_string(), "{what}: {body}");
}

async fn remembered_only_until_the_sign_in_ends(backend: Backend) {
    let server = TestServer::start_on(backend, &[("METRICS_TOKEN", TOKEN)]).await;
    let base = server.base.clone();
    let ann = signup_cookie(&base, "cacheann").await;
    let bob = signup_cookie(&base, "cachebob").await;

    // Five connects of one sign-in: one database read.
    let before = session_loads(&base).await;
    for _ in 0..5 {
        assert_eq!(connect_once(&base, &ann).await, 200);
    }
    assert_eq!(session_loads(&base).await - before, 1.0, "remembered");

    // Signed out (while remembered): no stream for the old cookie, and
    // the stream that was open ends.
    let mut open = crate::support::SseStream::new(connect_with(&base, &ann).await);
    assert!(open.next_event(Duration::from_secs(2)).await.is_some());
    sign_out(&base, &ann).await;
    assert!(open.ends_within(Duration::from_secs(2)).await);
    refused(&base, &ann, "a signed-out session").await;

    // Another sign-in is untouched, and is itself, not the one before.
    let response = connect_with(&base, &bob).await;
    assert_eq!(response.status(), 200);
    let mut stream = crate::support::SseStream::new(response);
    let (name, data) = stream
        .next_event(Duration::from_secs(2))
        .await
        .expect("connected");
    assert_eq!(name, "connected");
    let connected: serde_json::Value = serde_json::from_str(&data).expect("JSON");
    let id = connected["clientId"].as_str().expect("clientId");
    let listing: serde_json::Value = reqwest::Client::new()
        .get(format!("{base}/api/sse/clients?clientIds={id}"))
        .header("cookie", &bob)
        .send()
        .await
        .expect("GET /api/sse/clients")
        .json()
        .await
        .expect("JSON");
    assert_eq!(listing["clients"][0]["username"], "cachebob", "{listing}");

    // A new sign-in of the same account replaces the remembered one: the
    // cookie it replaced gets nothing.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    assert_eq!(connect_once(&base, &bob).await, 200);
    let login = client
        .post(format!("{base}/api/auth/login"))
        .header("cookie", &bob)
        .form(&[
            ("username", "cachebob"),
            ("password", crate::support::PASSWORD),
        ])
        .send()
        .await
        .expect("POST login");
    assert_eq!(login.status(), 200);
    let renewed = crate::support::sid_cookie(login.headers()).expect("a new session cookie");
    assert_ne!(renewed, bob);
    assert!(stream.ends_within(Duration::from_secs(2)).await);
    refused(&base, &bob, "the session a new sign-in replaced").await;
    assert_eq!(connect_once(&base, &renewed).await, 200);

    // Made-up cookies: never remembered, never admitted.
    for made_up in [
        "sid=AAAAAAAAAAAAAAAAAAAAAA".to_string(),
        "sid=not-a-session".to_string(),
        format!("{ann}x"),
    ] {
        for _ in 0..2 {
            refused(&base, &made_up, &made_up).await;
        }
    }
    server.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn remembered_only_until_the_sign_in_ends_sqlite() {
    remembered_only_until_the_sign_in_ends(Backend::Sqlite).await;
}

#[tokio::test]
async fn remembered_only_until_the_sign_in_ends_postgres() {
    remembered_only_until_the_sign_in_ends(Backend::Postgres).await;
}

/// With the cache off, every connect reads the session.
#[tokio::test]
async fn off_reads_every_connect() {
    let server = TestServer::start(&[
        ("METRICS_TOKEN", TOKEN),
        ("AUTH_STREAM_SESSION_CACHE", "0s"),
    ])
    .await;
    let ann = signup_cookie(&server.base, "offann").await;
    let before = session_loads(&server.base).await;
    for _ in 0..3 {
        assert_eq!(connect_once(&server.base, &ann).await, 200);
    }
    assert_eq!(session_loads(&server.base).await - before, 3.0);
    server.shutdown().await.expect("clean stop");
}
