//! `GET /api/sse`, `GET /api/sse/clients` and the send endpoints, over
//! real HTTP against the real server, read by a real SSE parser. Users
//! sign up through the real endpoint; their session cookie is their
//! identity.

use std::time::{Duration, Instant};

use crate::support::{Item, SseStream, TestServer};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(2);

#[tokio::test]
async fn stream_headers_preamble_and_heartbeats() {
    let server = TestServer::start(&[("SSE_PING_INTERVAL", "150ms")]).await;
    let alice = server.signup("alice").await;
    let response = alice.connect("").await;
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
    // Then the inbox summary (a fresh stream), then only heartbeats.
    let (name, data) = stream.next_event(WAIT).await.expect("inbox");
    assert_eq!((name.as_str(), data.as_str()), ("inbox", r#"{"unread":0}"#));

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
    let server = TestServer::start(&[]).await;
    let alice = server.signup("alice").await;
    let bob = server.signup("bob").await;
    let root = server.signup("root").await;
    server.grant_admin("root");
    let (mut alice_1, _) = alice.open("").await;
    let (mut alice_2, _) = alice.open("?tag=page:home").await;
    let (mut bob_1, _) = bob.open("").await;

    let message = "Hello \"Alice\"\nsecond line, ünïcode ✓";
    let (status, body) = bob
        .post_json(
            "/api/sse/test",
            &json!({"user": "alice", "event": "notification", "message": message}).to_string(),
        )
        .await;
    assert_eq!((status, &body["delivered"]), (200, &json!(2)));

    for stream in [&mut alice_1, &mut alice_2] {
        let (name, data) = stream.next_event(WAIT).await.expect("alice receives");
        assert_eq!(name, "notification");
        let payload: Value = serde_json::from_str(&data).expect("JSON");
        assert_eq!(payload["message"], message);
        assert_eq!(payload["from"], "bob");
        assert!(payload["sentAt"].as_u64().is_some());
    }
    assert_eq!(
        bob_1.next_event(Duration::from_millis(300)).await,
        None,
        "bob must not receive"
    );

    // An untyped event name, broadcast by an admin to everyone.
    let (status, body) = root
        .post_json(
            "/api/sse/broadcast",
            &json!({"event": "announcement", "message": "to all"}).to_string(),
        )
        .await;
    assert_eq!((status, &body), (200, &json!({"delivered": 3})));
    for stream in [&mut alice_1, &mut alice_2, &mut bob_1] {
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
    let server = TestServer::start(&[]).await;
    let carol = server.signup("carol").await;
    let (stream, gone_id) = carol.open("").await;
    let (_kept, kept_id) = carol.open("?tag=page:home").await;

    let listing = carol.clients("?userId=carol").await;
    assert_eq!(listing["clients"].as_array().map(Vec::len), Some(2));
    assert_eq!(listing["stats"]["totalClients"], 2);
    let tagged = carol.clients(&format!("?clientIds={kept_id}")).await;
    assert_eq!(
        tagged["clients"][0]["tags"],
        json!(["role:user", "page:home"])
    );
    assert_eq!(tagged["clients"][0]["username"], "carol");
    assert!(tagged["clients"][0]["connectedSince"].as_u64().is_some());

    drop(stream);
    let started = Instant::now();
    loop {
        let ids: Vec<String> = carol.clients("").await["clients"]
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
    let server = TestServer::start(&[("SSE_MAX_CLIENTS", "3"), ("SSE_PER_USER_MAX", "2")]).await;
    let dave = server.signup("dave").await;
    let erin = server.signup("erin").await;
    let frank = server.signup("frank").await;
    let _a1 = dave.open("").await;
    let _a2 = dave.open("").await;

    let response = dave.connect("").await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().get("retry-after").is_some());
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"], "too_many_connections");

    let _b1 = erin.open("").await;
    let response = frank.connect("").await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().get("retry-after").is_some());
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"], "too_many_clients");
    assert!(body["message"].as_str().is_some_and(|m| m.contains('3')));
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn client_tags_are_validated_and_reserved_keys_refused() {
    let server = TestServer::start(&[]).await;
    let alice = server.signup("alice").await;
    for query in [
        "?tag=role:admin",
        "?tag=user:bob",
        "?tag=nocolon",
        "?tag=a%20b:c",
        "?tag=a:1&tag=b:1&tag=c:1&tag=d:1&tag=e:1&tag=f:1&tag=g:1&tag=h:1&tag=i:1",
    ] {
        let response = alice.connect(query).await;
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
    let server = TestServer::start(&[]).await;
    let alice = server.signup("alice").await;
    let long = "x".repeat(2001);
    let cases = [
        ("{not json", "bad_request"),
        (r#"{"user":"alice"}"#, "bad_request"),
        (r#"{"user":"","message":"hi"}"#, "missing_user"),
        (r#"{"user":"nobody","message":"hi"}"#, "unknown_user"),
        (r#"{"user":"alice","message":"   "}"#, "empty_message"),
        (
            r#"{"user":"alice","message":"hi","event":"bad\nname"}"#,
            "bad_event_name",
        ),
    ];
    for (body, code) in cases {
        let (status, json) = alice.post_json("/api/sse/test", body).await;
        assert_eq!(status, 400, "{body}: {json}");
        assert_eq!(json["error"], code, "{body}: {json}");
        assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (status, json) = alice
        .post_json(
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

/// A user once could push the server's own
/// `connected` event into another user's stream (the browser hook then
/// replaced its client id).
#[tokio::test]
async fn the_servers_own_event_names_cannot_be_sent() {
    let server = TestServer::start(&[]).await;
    let alice = server.signup("alice").await;
    let bob = server.signup("bob").await;
    let (mut stream, _) = bob.open("").await;
    for name in ["connected", "sse-reset", "sse-drain", "inbox"] {
        let body = json!({"user": "bob", "message": "hi", "event": name}).to_string();
        let (status, json) = alice.post_json("/api/sse/test", &body).await;
        assert_eq!(status, 400, "{name}: {json}");
        assert_eq!(json["error"], "reserved_event_name", "{name}: {json}");
    }
    // Nothing reached bob; an ordinary event still does, and is the next.
    let (status, _) = alice
        .post_json("/api/sse/test", r#"{"user":"bob","message":"after"}"#)
        .await;
    assert_eq!(status, 200);
    let (name, data) = stream.next_event(WAIT).await.expect("an event");
    assert_eq!(name, "notification");
    assert!(data.contains("after"), "{data}");
    server.shutdown().await.expect("clean shutdown");
}

/// With no cap per address, ~63 accounts from one address
/// filled every stream slot. A forwarding header counts only from a
/// configured proxy.
#[tokio::test]
async fn one_address_cannot_take_every_stream_slot() {
    let server = TestServer::start(&[("SSE_PER_ADDRESS_MAX", "2")]).await;
    let users = [
        server.signup("usr1").await,
        server.signup("usr2").await,
        server.signup("usr3").await,
    ];
    let (_s1, _) = users[0].open("").await;
    let (_s2, _) = users[1].open("").await;
    let refused = users[2].connect("").await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().get("retry-after").is_some());
    let json: Value = refused.json().await.expect("JSON");
    assert_eq!(json["error"], "too_many_connections_from_address", "{json}");
    // A forged forwarding header changes nothing without a trusted proxy.
    let forged = users[2]
        .client
        .get(users[2].url("/api/sse"))
        .header("x-forwarded-for", "198.51.100.7")
        .send()
        .await
        .expect("GET");
    assert_eq!(forged.status(), 429);
    server.shutdown().await.expect("clean shutdown");

    // Behind a trusted proxy, each forwarded address has its own share.
    let server = TestServer::start(&[
        ("SSE_PER_ADDRESS_MAX", "1"),
        ("SERVER_TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    let a = server.signup("pxa").await;
    let b = server.signup("pxb").await;
    let open = |user: &crate::support::User, from: &str| {
        user.client
            .get(user.url("/api/sse"))
            .header("x-forwarded-for", from)
            .send()
    };
    let first = open(&a, "198.51.100.1").await.expect("GET");
    assert_eq!(first.status(), 200);
    let other = open(&b, "198.51.100.2").await.expect("GET");
    assert_eq!(other.status(), 200);
    let same = open(&b, "203.0.113.5, 198.51.100.1").await.expect("GET");
    assert_eq!(same.status(), 429, "the proxy's own hop names the client");
    drop((first, other));
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn shutdown_ends_open_streams_cleanly() {
    let server = TestServer::start(&[]).await;
    let gina = server.signup("gina").await;
    let (mut stream, _) = gina.open("").await;
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
    let server = TestServer::start(&[]).await;
    let alice = server.signup("alice").await;
    let response = alice
        .client
        .get(alice.url("/api/sse/clients?clientIds=abc"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"], "bad_client_id");
    server.shutdown().await.expect("clean shutdown");
}

/// A client that stops reading is dropped after `client_timeout`, and its
/// registry entry with it.
#[tokio::test]
async fn a_stalled_client_is_dropped_after_the_client_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server =
        TestServer::start(&[("SSE_CLIENT_TIMEOUT", "300ms"), ("SSE_QUEUE_LEN", "100000")]).await;
    let _hank = server.signup("hank").await;
    let watcher = server.signup("ivy").await;
    // A raw socket with a session of hank's that reads the headers, then
    // stops reading.
    let login = server
        .browser()
        .post(server.url("/api/auth/login"))
        .form(&[("username", "hank"), ("password", crate::support::PASSWORD)])
        .send()
        .await
        .expect("login");
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("session cookie")
        .to_string();
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut socket = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    socket
        .write_all(
            format!("GET /api/sse HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\r\n").as_bytes(),
        )
        .await
        .expect("request");
    let mut head = [0u8; 512];
    let n = socket.read(&mut head).await.expect("response head");
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));
    assert_eq!(
        watcher.clients("?userId=hank").await["clients"],
        json!([]),
        "ivy sees only her own"
    );

    // Flood hank with the longest messages until the socket buffers fill,
    // the write stalls for client_timeout and the server drops him.
    // A live event: this is about the socket, not the inbox (a
    // persistent `notification` waits for its group commit, which made
    // filling the buffers take longer than the test allows).
    let flood = json!({"user": "hank", "event": "flood", "message": "x".repeat(2000)});
    let started = Instant::now();
    loop {
        let (status, body) = watcher.post_json("/api/sse/test", &flood.to_string()).await;
        assert_eq!(status, 200, "{body}");
        if body["delivered"] == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "stalled client never dropped"
        );
    }
    drop(socket);
    server.shutdown().await.expect("clean shutdown");
}
