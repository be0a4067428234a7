//! The example app over real HTTP: its own sign-in, the layer's stream,
//! sends from a handler and from a background task, the inbox on SQLite.

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

struct Server {
    base: String,
    _dir: TempDir,
}

/// A directory removed when the test ends.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start(tick: Duration) -> Server {
    let dir = std::env::temp_dir().join(format!("plain-axum-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("example.db").display());
    let app = plain_axum_example::build(&url, tick).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    Server {
        base: format!("http://{addr}"),
        _dir: TempDir(dir),
    }
}

/// A signed-in user: the session cookie this app's sign-in gave.
async fn sign_in(server: &Server, name: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("{}/login", server.base))
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_string()
}

async fn post(server: &Server, cookie: &str, path: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", server.base))
        .header("cookie", cookie)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(server: &Server, cookie: &str, path: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", server.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[derive(Debug, Clone)]
struct Frame {
    id: Option<String>,
    event: String,
    data: Value,
}

/// A real SSE reader over a response body.
struct Stream {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl Stream {
    async fn open(server: &Server, cookie: &str, last_event_id: Option<&str>) -> reqwest::Response {
        let mut request = reqwest::Client::new()
            .get(format!("{}/api/sse", server.base))
            .header("cookie", cookie)
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        request.send().await.unwrap()
    }

    async fn connect(server: &Server, cookie: &str, last_event_id: Option<&str>) -> Stream {
        let response = Stream::open(server, cookie, last_event_id).await;
        assert_eq!(response.status(), 200);
        Stream {
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next frame with an event (comments and `retry:` skipped).
    async fn next(&mut self) -> Frame {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    let (mut id, mut event, mut data) =
                        (None, "message".to_string(), String::new());
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("id:") {
                            id = Some(v.trim().to_string());
                        } else if let Some(v) = line.strip_prefix("event:") {
                            event = v.trim().to_string();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim_start());
                        }
                    }
                    if data.is_empty() {
                        continue;
                    }
                    let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
                    return Frame { id, event, data };
                }
                let chunk = self.body.next().await.expect("stream ended").unwrap();
                self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        })
        .await
        .expect("no event in time")
    }

    /// The next frame named `event`, skipping the others.
    async fn next_named(&mut self, event: &str) -> Frame {
        loop {
            let frame = self.next().await;
            if frame.event == event {
                return frame;
            }
        }
    }
}

#[tokio::test]
async fn a_message_reaches_only_its_user_and_the_tick_reaches_everyone() {
    let server = start(Duration::from_millis(200)).await;
    let ann = sign_in(&server, "ann").await;
    let bob = sign_in(&server, "bob").await;
    let mut ann_stream = Stream::connect(&server, &ann, None).await;
    let mut bob_stream = Stream::connect(&server, &bob, None).await;
    assert_eq!(ann_stream.next().await.event, "connected");
    assert_eq!(bob_stream.next().await.event, "connected");

    let (status, delivered) =
        post(&server, &bob, "/send", json!({ "to": "ann", "text": "hi" })).await;
    assert_eq!((status, delivered), (200, json!(1)));
    let message = ann_stream.next_named("message").await;
    assert_eq!(message.data, json!({ "from": "bob", "text": "hi" }));

    // The background task's ticks reach both; bob never sees ann's message.
    let mut seen = 0;
    while seen < 2 {
        let frame = bob_stream.next().await;
        assert_ne!(frame.event, "message", "bob received {frame:?}");
        if frame.event == "tick" {
            seen += 1;
        }
    }
    ann_stream.next_named("tick").await;
}

#[tokio::test]
async fn every_message_arrives_once_in_order_across_a_reconnect() {
    let server = start(Duration::from_secs(3600)).await;
    let ann = sign_in(&server, "ann").await;
    let bob = sign_in(&server, "bob").await;
    let mut stream = Stream::connect(&server, &ann, None).await;
    stream.next_named("connected").await;
    const N: usize = 200;
    let sender = tokio::spawn({
        let (base, bob) = (server.base.clone(), bob.clone());
        async move {
            let client = reqwest::Client::new();
            for i in 0..N {
                let response = client
                    .post(format!("{base}/send"))
                    .header("cookie", &bob)
                    .json(&json!({ "to": "ann", "text": i.to_string() }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
            }
        }
    });
    let mut received = Vec::new();
    let mut last_id = None;
    while received.len() < N / 3 {
        let frame = stream.next_named("message").await;
        last_id = frame.id.clone();
        received.push(
            frame.data["text"]
                .as_str()
                .unwrap()
                .parse::<usize>()
                .unwrap(),
        );
    }
    // Drop the connection mid-flow; resume from the last id seen.
    drop(stream);
    let mut stream = Stream::connect(&server, &ann, last_id.as_deref()).await;
    while received.len() < N {
        let frame = stream.next().await;
        if frame.event == "message" {
            received.push(
                frame.data["text"]
                    .as_str()
                    .unwrap()
                    .parse::<usize>()
                    .unwrap(),
            );
        }
    }
    sender.await.unwrap();
    assert_eq!(received, (0..N).collect::<Vec<_>>());
}

#[tokio::test]
async fn without_a_sign_in_nothing_is_served() {
    let server = start(Duration::from_secs(3600)).await;
    for cookie in ["", "example_session=made-up"] {
        let response = Stream::open(&server, cookie, None).await;
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "unauthenticated");
        let (status, body) = post(
            &server,
            cookie,
            "/send",
            json!({ "to": "ann", "text": "x" }),
        )
        .await;
        assert_eq!((status, &body["error"]), (401, &json!("unauthenticated")));
        assert_eq!(get(&server, cookie, "/inbox").await.0, 401);
    }
}

#[tokio::test]
async fn bad_input_gets_a_status_and_a_reason() {
    let server = start(Duration::from_secs(3600)).await;
    let (status, body) = post(&server, "", "/login", json!({ "name": "" })).await;
    assert_eq!((status, &body["error"]), (400, &json!("bad_name")));
    let bob = sign_in(&server, "bob").await;
    let huge = "x".repeat(100 * 1024);
    let (status, body) = post(&server, &bob, "/send", json!({ "to": "ann", "text": huge })).await;
    assert_eq!((status, &body["error"]), (400, &json!("bad_event")));
    assert!(
        body["message"].as_str().unwrap().contains("payload"),
        "{body}"
    );
}

#[tokio::test]
async fn the_inbox_keeps_what_came_while_offline_for_its_user_only() {
    let server = start(Duration::from_secs(3600)).await;
    let ann = sign_in(&server, "ann").await;
    let bob = sign_in(&server, "bob").await;
    // Ann is offline: nothing is connected.
    let (status, id) = post(
        &server,
        &bob,
        "/remind",
        json!({ "to": "ann", "text": "call me" }),
    )
    .await;
    assert_eq!(status, 200, "{id}");

    let (_, page) = get(&server, &ann, "/inbox").await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    assert_eq!(items[0]["id"], id);
    assert_eq!(items[0]["event"], "reminder");
    assert_eq!(items[0]["readAt"], Value::Null);
    let (_, page) = get(&server, &bob, "/inbox").await;
    assert_eq!(page["items"], json!([]), "bob sees ann's inbox: {page}");

    // Coming online, ann's stream starts with her unread count.
    let mut stream = Stream::connect(&server, &ann, None).await;
    let summary = stream.next_named("inbox").await;
    assert_eq!(summary.data["unread"], 1, "{summary:?}");

    // Bob cannot mark ann's notification read; a made-up id neither.
    for (who, ids) in [
        (&bob, json!([id])),
        (&ann, json!([id.as_i64().unwrap() + 1000])),
    ] {
        let (status, body) = post(&server, who, "/inbox/read", ids).await;
        assert_eq!((status, &body["error"]), (404, &json!("unknown_ids")));
    }
    let (status, summary) = post(&server, &ann, "/inbox/read", json!([id])).await;
    assert_eq!((status, &summary["unread"]), (200, &json!(0)));
    // Her open stream hears it too (other tabs update their badge).
    let told = stream.next_named("inbox").await;
    assert_eq!(told.data["unread"], 0);
}
