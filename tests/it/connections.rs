//! How connections are served (`sse::serve`), over raw TCP so that the
//! test decides what shares a connection: bodiless GETs are answered
//! directly (a stream on a fresh connection, or after other GETs on a
//! keep-alive one); after a request with a body the connection belongs to
//! hyper. A stream must look the same to a client either way. Also:
//! refusals, disconnects, the header timeout, pipelining, shutdown.

use std::time::{Duration, Instant};

use crate::support::TestServer;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(2);

/// Signs `name` up without a cookie store; returns `sid=…`.
async fn session_cookie(server: &TestServer, name: &str) -> String {
    crate::support::signup_cookie(&server.base, name).await
}

/// A raw HTTP/1.1 connection and what it has received.
struct Raw {
    socket: TcpStream,
    received: Vec<u8>,
}

impl Raw {
    async fn connect(server: &TestServer) -> Raw {
        let addr = server.url("").trim_start_matches("http://").to_string();
        let socket = TcpStream::connect(addr).await.expect("connect");
        Raw {
            socket,
            received: Vec::new(),
        }
    }

    async fn send(&mut self, request: &str) {
        self.socket
            .write_all(request.as_bytes())
            .await
            .expect("write");
    }

    async fn stream_request(&mut self, cookie: Option<&str>) {
        let cookie = cookie
            .map(|c| format!("Cookie: {c}\r\n"))
            .unwrap_or_default();
        self.send(&format!(
            "GET /api/sse HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n{cookie}\r\n"
        ))
        .await;
    }

    /// Reads until `done(received)` or `WAIT` passes; false on timeout.
    async fn read_until(&mut self, done: impl Fn(&[u8]) -> bool) -> bool {
        let deadline = Instant::now() + WAIT;
        let mut buf = [0u8; 4096];
        while !done(&self.received) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.socket.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return done(&self.received),
                Ok(Ok(n)) => self.received.extend_from_slice(&buf[..n]),
            }
        }
        true
    }

    /// Reads one complete response with a `content-length` body and
    /// removes it from `received`; returns the head and the body.
    async fn response(&mut self) -> (String, String) {
        let complete = |r: &[u8]| split_response(r).is_some();
        assert!(self.read_until(complete).await, "a complete response");
        let (head, body, used) = split_response(&self.received).expect("response");
        self.received.drain(..used);
        (head, body)
    }

    /// The response head and the de-chunked body received so far.
    fn stream_so_far(&self) -> (String, String) {
        let text = String::from_utf8_lossy(&self.received).to_string();
        let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (head.to_string(), dechunk(rest).0)
    }

    async fn read_stream_until(&mut self, needle: &str) -> bool {
        self.read_until(|r| {
            let text = String::from_utf8_lossy(r);
            text.split_once("\r\n\r\n")
                .is_some_and(|(_, rest)| dechunk(rest).0.contains(needle))
        })
        .await
    }

    /// True if the server closes the connection within `WAIT`.
    async fn closed_by_server(&mut self) -> bool {
        let mut buf = [0u8; 1024];
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.socket.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(n)) => self.received.extend_from_slice(&buf[..n]),
                Err(_) => return false,
            }
        }
    }
}

/// Splits a response with a `content-length` body off `bytes`.
fn split_response(bytes: &[u8]) -> Option<(String, String, usize)> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&bytes[..end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    let body = bytes.get(end..end + length)?;
    Some((
        head,
        String::from_utf8_lossy(body).to_string(),
        end + length,
    ))
}

/// Decodes chunked framing; returns the data and whether the final
/// (empty) chunk was seen.
fn dechunk(mut rest: &str) -> (String, bool) {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 {
            return (out, true);
        }
        let Some(data) = after.get(..size) else {
            break;
        };
        out.push_str(data);
        rest = after.get(size + 2..).unwrap_or("");
    }
    (out, false)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn a_stream_looks_the_same_on_a_fresh_and_on_a_reused_connection() {
    let server = TestServer::start(&[]).await;
    let alice = session_cookie(&server, "alice").await;
    let bob = server.signup("bob").await;

    // First request on its connection: written directly.
    let mut fresh = Raw::connect(&server).await;
    fresh.stream_request(Some(&alice)).await;
    // After another GET on a keep-alive connection: directly too.
    let mut reused = Raw::connect(&server).await;
    reused
        .send("GET /api/sse/clients HTTP/1.1\r\nHost: test\r\n\r\n")
        .await;
    let (head, _) = reused.response().await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert_eq!(header(&head, "connection"), None, "{head}");
    reused.stream_request(Some(&alice)).await;
    // After a request with a body: hyper.
    let mut after_post = Raw::connect(&server).await;
    after_post
        .send("POST /api/sse/test HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
        .await;
    let (head, _) = after_post.response().await;
    assert!(head.starts_with("HTTP/1.1 4"), "{head}");
    after_post.stream_request(Some(&alice)).await;

    for raw in [&mut fresh, &mut reused, &mut after_post] {
        assert!(raw.read_stream_until("event: connected").await);
        let (head, body) = raw.stream_so_far();
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert_eq!(header(&head, "content-type"), Some("text/event-stream"));
        assert_eq!(header(&head, "cache-control"), Some("no-cache"));
        assert_eq!(header(&head, "x-accel-buffering"), Some("no"));
        assert_eq!(header(&head, "transfer-encoding"), Some("chunked"));
        assert!(header(&head, "date").is_some(), "{head}");
        assert!(body.starts_with("retry: 3000\nid: "), "{body}");
        assert!(body.contains("\nevent: connected\n"), "{body}");
    }
    // Written directly, a stream says that its end closes the connection.
    let direct = if crate::support::direct_responses() {
        vec![&fresh, &reused]
    } else {
        Vec::new()
    };
    for raw in direct {
        let (head, _) = raw.stream_so_far();
        assert_eq!(header(&head, "connection"), Some("close"), "{head}");
    }

    let (status, answer) = bob
        .post_json(
            "/api/sse/test",
            &json!({"user": "alice", "message": "to both"}).to_string(),
        )
        .await;
    assert_eq!((status, &answer["delivered"]), (200, &json!(3)));
    for raw in [&mut fresh, &mut reused, &mut after_post] {
        assert!(raw.read_stream_until("to both").await);
        assert!(raw.stream_so_far().1.contains("event: notification\n"));
    }

    // Shutdown ends both streams with the final chunk.
    server.shutdown().await.expect("clean shutdown");
    for raw in [&mut fresh, &mut reused, &mut after_post] {
        assert!(raw.closed_by_server().await);
        let text = String::from_utf8_lossy(&raw.received).to_string();
        let (_, rest) = text.split_once("\r\n\r\n").expect("head");
        assert!(dechunk(rest).1, "no final chunk in {rest:?}");
    }
}

#[tokio::test]
async fn a_refused_stream_gets_its_json_error_and_the_connection_stays_usable() {
    let server = TestServer::start(&[]).await;
    let alice = session_cookie(&server, "alice").await;
    let mut raw = Raw::connect(&server).await;
    raw.stream_request(None).await;
    let (head, body) = raw.response().await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert_eq!(header(&head, "content-type"), Some("application/json"));
    let json: Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(json["error"], "unauthenticated", "{json}");
    // The same connection serves the next request.
    raw.stream_request(Some(&alice)).await;
    assert!(raw.read_stream_until("event: connected").await);

    // A client that asks to close gets its answer, then the close.
    let mut closing = Raw::connect(&server).await;
    closing
        .send("GET /api/sse HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await;
    let (head, _) = closing.response().await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert_eq!(header(&head, "connection"), Some("close"));
    assert!(closing.closed_by_server().await);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn closing_a_direct_stream_unregisters_it() {
    let server = TestServer::start(&[]).await;
    let alice = session_cookie(&server, "alice").await;
    let alice_browser = server.login("alice").await;
    let mut raw = Raw::connect(&server).await;
    raw.stream_request(Some(&alice)).await;
    assert!(raw.read_stream_until("event: connected").await);
    let listed = alice_browser.clients("").await;
    assert_eq!(
        listed["clients"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );

    drop(raw);
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let listed = alice_browser.clients("").await;
        if listed["clients"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(Instant::now() < deadline, "still listed: {listed}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_connection_without_a_complete_head_is_closed_after_the_header_timeout() {
    let server = TestServer::start(&[("SERVER_HEADER_TIMEOUT", "300ms")]).await;
    let mut silent = Raw::connect(&server).await;
    let mut partial = Raw::connect(&server).await;
    partial.send("GET /api/sse HTTP/1.1\r\nHost: te").await;
    let started = Instant::now();
    assert!(silent.closed_by_server().await);
    assert!(partial.closed_by_server().await);
    assert!(started.elapsed() >= Duration::from_millis(250));

    // Idle keep-alive connections after a first request, too: answered
    // directly, and by hyper.
    let mut idle = Raw::connect(&server).await;
    idle.send("GET /api/sse/clients HTTP/1.1\r\nHost: test\r\n\r\n")
        .await;
    let mut idle_hyper = Raw::connect(&server).await;
    idle_hyper
        .send("POST /api/sse/test HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n")
        .await;
    for raw in [&mut idle, &mut idle_hyper] {
        let (head, _) = raw.response().await;
        assert!(head.starts_with("HTTP/1.1 4"), "{head}");
        assert!(raw.closed_by_server().await);
    }
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn pipelined_and_non_stream_first_requests_are_served_by_hyper() {
    let server = TestServer::start(&[]).await;
    let mut raw = Raw::connect(&server).await;
    // Two requests in one write: the first is not answered directly.
    raw.send(
        "GET /api/sse/clients HTTP/1.1\r\nHost: test\r\n\r\nGET /api/sse HTTP/1.1\r\nHost: test\r\n\r\n",
    )
    .await;
    let (first, _) = raw.response().await;
    assert!(first.starts_with("HTTP/1.1 401"), "{first}");
    let (second, body) = raw.response().await;
    assert!(second.starts_with("HTTP/1.1 401"), "{second}");
    assert!(body.contains("unauthenticated"), "{body}");
    server.shutdown().await.expect("clean shutdown");
}

// ---- Findings of the hardening review: each test failed before its fix.

/// Starts a server in the given transport mode.
async fn server_in_mode(direct: bool, overrides: &[(&str, &str)]) -> TestServer {
    let mut all = overrides.to_vec();
    all.push((
        "SERVER_DIRECT_RESPONSES",
        if direct { "true" } else { "false" },
    ));
    TestServer::start(&all).await
}

/// An authority-form target (which panicked in leptos_axum: no answer)
/// and no Host, or two (which were served): 400 with the JSON error
/// shape on both connection paths, before the router.
#[tokio::test]
async fn malformed_request_lines_and_hosts_get_400_on_both_paths() {
    for direct in [true, false] {
        let server = server_in_mode(direct, &[]).await;
        let cases = [
            (
                "GET 127.0.0.1:3000 HTTP/1.1\r\nHost: x\r\n\r\n",
                "bad_request_target",
            ),
            ("GET * HTTP/1.1\r\nHost: x\r\n\r\n", "bad_request_target"),
            ("GET /api/sse/clients HTTP/1.1\r\n\r\n", "bad_host"),
            (
                "GET /api/sse/clients HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                "bad_host",
            ),
            ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "bad_host"),
            // On the hyper path from the start: a body.
            (
                "POST 127.0.0.1:3000 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
                "bad_request_target",
            ),
            (
                "POST /api/auth/me HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: 0\r\n\r\n",
                "bad_host",
            ),
        ];
        for (request, code) in cases {
            let mut raw = Raw::connect(&server).await;
            raw.send(request).await;
            let (head, body) = raw.response().await;
            assert!(
                head.starts_with("HTTP/1.1 400"),
                "{direct} {request:?}: {head}"
            );
            let json: Value = serde_json::from_str(&body).expect("JSON body");
            assert_eq!(json["error"], code, "{direct} {request:?}: {json}");
            assert!(raw.closed_by_server().await, "{request:?}: closed after");
        }
        // HEAD with an authority-form target: the status alone.
        let mut raw = Raw::connect(&server).await;
        raw.send("HEAD 127.0.0.1:3000 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        assert!(
            raw.read_until(|r| r.windows(4).any(|w| w == b"\r\n\r\n"))
                .await
        );
        let head = String::from_utf8_lossy(&raw.received).to_string();
        assert!(head.starts_with("HTTP/1.1 400"), "{head}");
        // Well-formed requests are unaffected.
        let mut raw = Raw::connect(&server).await;
        raw.send("GET /api/sse/clients HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let (head, _) = raw.response().await;
        assert!(head.starts_with("HTTP/1.1 401"), "{head}");
        server.shutdown().await.expect("clean shutdown");
    }
}

/// An open stream on the direct path once read and discarded
/// whatever the client sent (1 GB in 8 s, a core busy).
#[tokio::test]
async fn a_stream_client_that_keeps_sending_is_cut_off() {
    let server = server_in_mode(true, &[]).await;
    let alice = session_cookie(&server, "alice").await;
    let mut raw = Raw::connect(&server).await;
    raw.stream_request(Some(&alice)).await;
    assert!(raw.read_stream_until("event: connected").await);
    let junk = vec![b'x'; 16 * 1024];
    let flood = async {
        for _ in 0..64 {
            if raw.socket.write_all(&junk).await.is_err() {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(WAIT, flood).await;
    assert!(
        raw.closed_by_server().await,
        "still open after 1 MiB of junk"
    );
    server.shutdown().await.expect("clean shutdown");
}

/// A stream dropped for falling behind used to free its slot but its
/// socket (and the unsent bytes in the kernel) stayed until
/// `client_timeout`. Now the pending write is interrupted and the
/// connection reset at once, on both paths.
#[tokio::test]
async fn a_stream_dropped_for_falling_behind_is_reset_at_once() {
    for direct in [true, false] {
        let server = server_in_mode(
            direct,
            &[("SSE_QUEUE_LEN", "4"), ("SSE_CLIENT_TIMEOUT", "60s")],
        )
        .await;
        let slow = session_cookie(&server, "slow").await;
        let sender = server.signup("sender").await;
        // A client with a tiny receive window that reads nothing more.
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let stream = socket
            .connect(server.addr().parse().expect("addr"))
            .await
            .expect("connect");
        let mut raw = Raw {
            socket: stream,
            received: Vec::new(),
        };
        raw.stream_request(Some(&slow)).await;
        assert!(raw.read_stream_until("event: connected").await);

        let message = "y".repeat(2000);
        let body = json!({"user": "slow", "message": message}).to_string();
        let mut sends = 0;
        loop {
            let (status, answer) = sender.post_json("/api/sse/test", &body).await;
            assert_eq!(status, 200, "{answer}");
            sends += 1;
            if answer["delivered"] == 0 {
                break;
            }
            assert!(sends < 2000, "the slow client was never dropped");
        }
        // The slot is free at once...
        let listed = server.login("slow").await.clients("").await;
        assert_eq!(
            listed["clients"].as_array().map(Vec::len),
            Some(0),
            "{listed}"
        );
        // ...and the connection is reset rather than kept to drain: the
        // client never sees the stream's final chunk.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut buf = vec![0u8; 64 * 1024];
        let deadline = Instant::now() + WAIT;
        let ended = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, raw.socket.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break true,
                Ok(Ok(n)) => raw.received.extend_from_slice(&buf[..n]),
                Err(_) => break false,
            }
        };
        assert!(ended, "direct={direct}: the connection is still open");
        let text = String::from_utf8_lossy(&raw.received).to_string();
        let (_, rest) = text.split_once("\r\n\r\n").expect("head");
        assert!(
            !dechunk(rest).1,
            "direct={direct}: the stuck write went on until the final chunk"
        );
        server.shutdown().await.expect("clean shutdown");
    }
}

/// A head trickled past the direct path's 8 KiB used to be handed to
/// hyper, whose header timeout started again. The whole head now has one
/// `header_timeout`.
#[tokio::test]
async fn a_trickled_head_gets_one_header_timeout_in_all() {
    let server = server_in_mode(true, &[("SERVER_HEADER_TIMEOUT", "3s")]).await;
    let mut raw = Raw::connect(&server).await;
    let started = Instant::now();
    raw.send("GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ").await;
    // 9 000 bytes in 2.6 s: past 8 KiB (the hand-over) near the deadline.
    let piece = "a".repeat(346);
    let mut closed_at = None;
    for _ in 0..200 {
        let text = if started.elapsed() < Duration::from_millis(2600) {
            piece.as_str()
        } else {
            "a"
        };
        if raw.socket.write_all(text.as_bytes()).await.is_err() {
            closed_at = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(100), raw.socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed_at = Some(started.elapsed());
                break;
            }
            _ => {}
        }
    }
    let closed_at = closed_at.expect("the connection was never closed");
    assert!(
        closed_at < Duration::from_millis(4500),
        "closed after {closed_at:?}, not within the 3 s header timeout"
    );
    server.shutdown().await.expect("clean shutdown");
}

/// A trickled body once held its connection without limit, and
/// the body limit answered 400 "length limit exceeded": now 408 and 413,
/// with the JSON error shape.
#[tokio::test]
async fn request_bodies_are_bounded_in_time_and_size() {
    let server =
        TestServer::start(&[("SERVER_BODY_TIMEOUT", "1s"), ("SERVER_MAX_BODY", "64KiB")]).await;
    let mut slow = Raw::connect(&server).await;
    slow.send(
        "POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nusername=",
    )
    .await;
    let started = Instant::now();
    let trickle = async {
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if slow.socket.write_all(b"a").await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(1500), trickle).await;
    let (head, body) = slow.response().await;
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let json: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["error"], "body_timeout", "{json}");

    // Announced too large: refused before reading.
    let mut big = Raw::connect(&server).await;
    big.send("POST /api/sse/test HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
        .await;
    let (head, body) = big.response().await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("JSON")["error"],
        "body_too_large"
    );
    // Chunked, growing past the limit while read.
    let chunked = reqwest::Client::new()
        .post(server.url("/api/sse/test"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(
            (0..20).map(|_| Ok::<_, std::io::Error>(vec![b' '; 8192])),
        )))
        .send()
        .await
        .expect("POST");
    assert_eq!(chunked.status(), 413);
    let json: Value = chunked.json().await.expect("JSON");
    assert_eq!(json["error"], "body_too_large");
    server.shutdown().await.expect("clean shutdown");
}
