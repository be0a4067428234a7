//! Shared by the integration tests: the real server on an ephemeral port,
//! and a small SSE client that parses the stream as browsers do.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use sse_notify::config::Config;
use sse_notify::server;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A running server and the means to stop it.
pub struct TestServer {
    pub base: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    /// The checked-in `Leptos.toml`, with `overrides` as environment.
    pub async fn start(overrides: &[(&str, &str)]) -> Self {
        let env: HashMap<String, String> = overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([("SERVER_SHUTDOWN_TIMEOUT".to_string(), "2s".to_string())])
            .collect();
        let config = Config::load(
            Some((Path::new("Leptos.toml"), include_str!("../../Leptos.toml"))),
            |name| env.get(name).cloned(),
        )
        .expect("test config");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(listener, config, async move {
            let _ = stopped.await;
        }));
        TestServer {
            base,
            stop: Some(stop),
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .expect("server stops within 5 s")
            .expect("server task did not panic")
    }
}

/// One thing read from an event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Event {
        id: Option<String>,
        name: String,
        data: String,
    },
    /// A `:` comment line (heartbeat), without the colon.
    Comment(String),
    Retry(u64),
}

/// Reads `text/event-stream` by the WHATWG rules: lines end at CR LF, CR
/// or LF; fields `event`, `data`, `id`, `retry`; a blank line dispatches.
pub struct SseStream {
    pub response_status: u16,
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
    /// Bytes of a UTF-8 character split across chunks.
    partial: Vec<u8>,
    pending_cr: bool,
    ready: std::collections::VecDeque<Item>,
    name: Option<String>,
    data: Vec<String>,
    id: Option<String>,
}

impl SseStream {
    pub fn new(response: reqwest::Response) -> Self {
        SseStream {
            response_status: response.status().as_u16(),
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
            partial: Vec::new(),
            pending_cr: false,
            ready: Default::default(),
            name: None,
            data: Vec::new(),
            id: None,
        }
    }

    /// The next event or comment, or `None` when the stream ended or
    /// nothing came within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Item> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(item);
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next()).await;
            match chunk {
                Ok(Some(Ok(bytes))) => self.feed_bytes(&bytes),
                Ok(Some(Err(_))) | Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The next event (comments and retry skipped).
    pub async fn next_event(&mut self, wait: Duration) -> Option<(String, String)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await? {
                Item::Event { name, data, .. } => return Some((name, data)),
                _ => continue,
            }
        }
    }

    /// True if the server ended the stream within `wait`.
    pub async fn ends_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Ok(None) | Ok(Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => continue,
                Err(_) => return false,
            }
        }
    }

    fn feed_bytes(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.partial) {
            Ok(text) => text.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(e) => panic!("stream is not UTF-8: {e}"),
        };
        let rest = self.partial.split_off(valid);
        let text = String::from_utf8(std::mem::replace(&mut self.partial, rest)).expect("checked");
        self.feed(&text);
    }

    fn feed(&mut self, text: &str) {
        for c in text.chars() {
            if self.pending_cr {
                self.pending_cr = false;
                if c == '\n' {
                    continue;
                }
            }
            match c {
                '\r' => {
                    self.pending_cr = true;
                    self.line();
                }
                '\n' => self.line(),
                c => self.buffer.push(c),
            }
        }
    }

    fn line(&mut self) {
        let line = std::mem::take(&mut self.buffer);
        if line.is_empty() {
            if !self.data.is_empty() {
                self.ready.push_back(Item::Event {
                    id: self.id.clone(),
                    name: self.name.take().unwrap_or_else(|| "message".into()),
                    data: self.data.join("\n"),
                });
            }
            self.data.clear();
            self.name = None;
            return;
        }
        if let Some(comment) = line.strip_prefix(':') {
            self.ready
                .push_back(Item::Comment(comment.trim_start().to_string()));
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f.to_string(), v.strip_prefix(' ').unwrap_or(v).to_string()),
            None => (line, String::new()),
        };
        match field.as_str() {
            "event" => self.name = Some(value),
            "data" => self.data.push(value),
            "id" => self.id = Some(value),
            "retry" => {
                if let Ok(ms) = value.parse() {
                    self.ready.push_back(Item::Retry(ms));
                }
            }
            _ => {}
        }
    }
}

/// Opens `GET /api/sse` as the development identity `user`.
pub async fn connect(server: &TestServer, user: &str, query: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(server.url(&format!("/api/sse{query}")))
        .header("x-dev-user", user)
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("GET /api/sse")
}

/// Opens a stream and reads up to its `connected` event; returns the
/// stream and the client id.
pub async fn open(server: &TestServer, user: &str, query: &str) -> (SseStream, String) {
    let response = connect(server, user, query).await;
    assert_eq!(response.status(), 200, "GET /api/sse as {user}");
    let mut stream = SseStream::new(response);
    assert_eq!(
        stream.next_within(Duration::from_secs(2)).await,
        Some(Item::Retry(3000))
    );
    let (name, data) = stream
        .next_event(Duration::from_secs(2))
        .await
        .expect("connected event");
    assert_eq!(name, "connected");
    let json: serde_json::Value = serde_json::from_str(&data).expect("connected is JSON");
    let id = json["clientId"].as_str().expect("clientId").to_string();
    (stream, id)
}
