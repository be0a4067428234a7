//! `GET /api/sse`, `GET /api/sse/clients` and the send endpoints, over
//! real HTTP against the real server, read by a real SSE parser.
//!
//! Identity comes from the development-only `X-Dev-User` header
//! (`SSE_INSECURE_DEV_IDENTITY=true`, honoured in debug builds only).

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Item, SseStream, TestServer, connect, open};

const DEV: (&str, &str) = ("SSE_INSECURE_DEV_IDENTITY", "true");
const WAIT: Duration = Duration::from_secs(2);

async fn post(server: &TestServer, path: &str, body: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(server.url(path))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("POST");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, json)
}

async fn clients(server: &TestServer, query: &str) -> Value {
    reqwest::get(server.url(&format!("/api/sse/clients{query}")))
        .await
        .expect("GET /api/sse/clients")
        .json()
        .await
        .expect("JSON")
}

#[tokio::test]
async fn stream_headers_preamble_and_heartbeats() {
    let server = TestServer::start(&[DEV, ("SSE_PING_INTERVAL", "150ms")]).await;
    let response = connect(&server, "alice", "").await;
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(header("content-type"), "text/event-stream");
    assert_eq!(header("cache-control"), "no-cache");
    assert_eq!(header("x-accel-buffering"), "no");

    let mut stream = SseStream::new(response);
    assert_eq!(stream.next_within(WAIT).await, Some(Item::Retry(3000)));
    let (name, data) = stream.next_event(WAIT).await.expect("connected");
    assert_eq!(name, "connected");
    let id: Value = serde_json::from_str(&data).expect("JSON");
    assert!(
        id["clientId"].as_str().is_some_and(|s| s.len() == 36),
        "{data}"
    );

    let mut pings = 0;
    while pings < 2 {
        match stream.next_within(WAIT).await {
            Some(Item::Comment(text)) => {
                assert_eq!(text, "ping");
                pings += 1;
            }
            other => panic!("expected a heartbeat, got {other:?}"),
        }
    }
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn events_reach_exactly_the_targeted_user() {
    let server = TestServer::start(&[DEV]).await;
    let (mut alice_1, _) = open(&server, "alice", "").await;
    let (mut alice_2, _) = open(&server, "alice", "?tag=page:home").await;
    let (mut bob, _) = open(&server, "bob", "").await;

    let message = "Hello \"Alice\"\nsecond line, ünïcode ✓";
    let (status, body) = post(
        &server,
        "/api/sse/test",
        &json!({"user": "alice", "event": "notification", "message": message}).to_string(),
    )
    .await;
    assert_eq!((status, &body), (200, &json!({"delivered": 2})));

    for stream in [&mut alice_1, &mut alice_2] {
        let (name, data) = stream.next_event(WAIT).await.expect("alice receives");
        assert_eq!(name, "notification");
        let payload: Value = serde_json::from_str(&data).expect("JSON");
        assert_eq!(payload["message"], message);
        assert!(payload["sentAt"].as_u64().is_some());
    }
    assert_eq!(
        bob.next_event(Duration::from_millis(300)).await,
        None,
        "bob must not receive"
    );

    // An untyped event name, sent to everyone.
    let (status, body) = post(
        &server,
        "/api/sse/broadcast",
        &json!({"event": "announcement", "message": "to all"}).to_string(),
    )
    .await;
    assert_eq!((status, &body), (200, &json!({"delivered": 3})));
    for stream in [&mut alice_1, &mut alice_2, &mut bob] {
        let (name, data) = stream.next_event(WAIT).await.expect("everyone receives");
        assert_eq!(name, "announcement");
        assert_eq!(
            serde_json::from_str::<Value>(&data).unwrap()["message"],
            "to all"
        );
    }
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_closed_client_leaves_the_listing_within_a_second() {
    let server = TestServer::start(&[DEV]).await;
    let (stream, gone_id) = open(&server, "carol", "").await;
    let (_kept, kept_id) = open(&server, "carol", "?tag=page:home").await;

    let listing = clients(&server, "?userId=carol").await;
    assert_eq!(listing["clients"].as_array().map(Vec::len), Some(2));
    assert_eq!(listing["stats"]["totalClients"], 2);
    assert_eq!(listing["stats"]["clientsPerUser"]["carol"], 2);
    let tagged = clients(&server, &format!("?clientIds={kept_id}")).await;
    assert_eq!(tagged["clients"][0]["tags"], json!(["page:home"]));
    assert_eq!(tagged["clients"][0]["user"], "carol");
    assert!(tagged["clients"][0]["connectedSince"].as_u64().is_some());

    drop(stream);
    let started = Instant::now();
    loop {
        let ids: Vec<String> = clients(&server, "").await["clients"]
            .as_array()
            .expect("clients")
            .iter()
            .map(|c| c["id"].as_str().unwrap_or_default().to_string())
            .collect();
        if !ids.contains(&gone_id) {
            assert_eq!(ids, vec![kept_id.clone()]);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "closed client still listed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn limits_answer_503_and_429_with_json() {
    let server =
        TestServer::start(&[DEV, ("SSE_MAX_CLIENTS", "3"), ("SSE_PER_USER_MAX", "2")]).await;
    let _a1 = open(&server, "dave", "").await;
    let _a2 = open(&server, "dave", "").await;

    let response = connect(&server, "dave", "").await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().get("retry-after").is_some());
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"], "too_many_connections");

    let _b1 = open(&server, "erin", "").await;
    let response = connect(&server, "frank", "").await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().get("retry-after").is_some());
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"], "too_many_clients");
    assert!(body["message"].as_str().is_some_and(|m| m.contains('3')));
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn identity_is_required_and_never_taken_from_the_query() {
    // Without the development identity: 401.
    let server = TestServer::start(&[]).await;
    let response = connect(&server, "alice", "").await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"], "unauthenticated");
    server.shutdown().await.expect("clean shutdown");

    let server = TestServer::start(&[DEV]).await;
    let (mut alice, id) = open(
        &server,
        "alice",
        "?user=bob&userId=bob&role=admin&session=x",
    )
    .await;
    let listing = clients(&server, &format!("?clientIds={id}")).await;
    assert_eq!(listing["clients"][0]["user"], "alice");
    assert_eq!(listing["clients"][0]["tags"], json!([]));
    let (_, body) = post(&server, "/api/sse/test", r#"{"user":"bob","message":"hi"}"#).await;
    assert_eq!(body["delivered"], 0);
    assert_eq!(alice.next_event(Duration::from_millis(300)).await, None);

    // Reserved tag keys and malformed tags are refused.
    for query in [
        "?tag=role:admin",
        "?tag=user:bob",
        "?tag=nocolon",
        "?tag=a%20b:c",
    ] {
        let response = connect(&server, "alice", query).await;
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.expect("JSON");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{query}"
        );
    }
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn send_endpoint_errors_are_400_with_json() {
    let server = TestServer::start(&[DEV]).await;
    let long = "x".repeat(2001);
    let cases = [
        ("{not json", "bad_request"),
        (r#"{"user":"alice"}"#, "bad_request"),
        (r#"{"user":"","message":"hi"}"#, "missing_user"),
        (r#"{"user":"alice","message":"   "}"#, "empty_message"),
        (
            r#"{"user":"alice","message":"hi","event":"bad\nname"}"#,
            "bad_event_name",
        ),
    ];
    for (body, code) in cases {
        let (status, json) = post(&server, "/api/sse/test", body).await;
        assert_eq!(status, 400, "{body}: {json}");
        assert_eq!(json["error"], code, "{body}: {json}");
        assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (status, json) = post(
        &server,
        "/api/sse/test",
        &json!({"user": "alice", "message": long}).to_string(),
    )
    .await;
    assert_eq!(
        (status, json["error"].as_str()),
        (400, Some("message_too_long"))
    );
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn shutdown_ends_open_streams_cleanly() {
    let server = TestServer::start(&[DEV]).await;
    let (mut stream, _) = open(&server, "gina", "").await;
    let started = Instant::now();
    server.shutdown().await.expect("clean shutdown");
    assert!(
        stream.ends_within(WAIT).await,
        "stream still open after shutdown"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shutdown waited for the stream"
    );
}

#[tokio::test]
async fn listing_rejects_bad_client_ids() {
    let server = TestServer::start(&[DEV]).await;
    let response = reqwest::get(server.url("/api/sse/clients?clientIds=abc"))
        .await
        .expect("GET");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"], "bad_client_id");
    server.shutdown().await.expect("clean shutdown");
}
