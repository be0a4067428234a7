//! A small SSE client that parses the stream as browsers do.

use std::time::Duration;

use futures::StreamExt;

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

/// The `inbox` summary a fresh stream starts with and the unread
/// notifications after it.
#[derive(Debug, Clone, Default)]
pub struct Backlog {
    pub unread: u64,
    /// How many unread events the summary said follow it.
    pub replayed: u64,
    /// (id, name, data), oldest first.
    pub events: Vec<(String, String, String)>,
}

impl Backlog {
    /// The inbox ids of the backlog's events.
    pub fn inbox_ids(&self) -> Vec<i64> {
        self.events.iter().map(|(id, _, _)| inbox_id(id)).collect()
    }
}

/// The inbox id at the end of a stored event's id (`<event id>:<n>`).
pub fn inbox_id(id: &str) -> i64 {
    id.rsplit_once(':')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or_else(|| panic!("{id:?} carries no inbox id"))
}

/// Reads `text/event-stream` by the WHATWG rules: lines end at CR LF, CR
/// or LF; fields `event`, `data`, `id`, `retry`; a blank line dispatches.
pub struct SseStream {
    /// What [`SseStream::take_backlog`] read.
    pub backlog: Backlog,
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
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
            partial: Vec::new(),
            pending_cr: false,
            ready: Default::default(),
            name: None,
            data: Vec::new(),
            id: None,
            backlog: Backlog::default(),
        }
    }

    /// Reads the `inbox` summary that comes next, and as many unread
    /// events as it announces (at most `sse.inbox_replay_max`).
    pub async fn take_backlog(&mut self) -> &Backlog {
        let (_, name, data) = self
            .next_with_id(Duration::from_secs(5))
            .await
            .expect("the inbox summary");
        assert_eq!(
            name, "inbox",
            "a fresh stream starts with the inbox: {data}"
        );
        let summary: serde_json::Value = serde_json::from_str(&data).expect("inbox is JSON");
        let unread = summary["unread"].as_u64().expect("unread count");
        let replayed = summary["replayed"].as_u64().unwrap_or(0);
        assert!(replayed <= unread, "the newest unread follow: {summary}");
        let mut events = Vec::new();
        for _ in 0..replayed {
            events.push(
                self.next_with_id(Duration::from_secs(5))
                    .await
                    .expect("an unread notification"),
            );
        }
        self.backlog = Backlog {
            unread,
            replayed,
            events,
        };
        &self.backlog
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

    /// The next event with its id (comments and retry skipped).
    pub async fn next_with_id(&mut self, wait: Duration) -> Option<(String, String, String)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await? {
                Item::Event { id, name, data } => {
                    return Some((id.unwrap_or_default(), name, data));
                }
                _ => continue,
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
