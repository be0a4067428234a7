//! Limits and timings of the SSE layer. The host fills this from its own
//! configuration; the layer itself reads no files.

use std::time::Duration;

/// Every number here bounds something: memory, connections or waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseConfig {
    /// A comment line is written this often, so proxies keep the stream
    /// open and dead peers are found.
    pub ping_interval: Duration,
    /// Open streams in this process; one more gets 503.
    pub max_clients: usize,
    /// Open streams per user; one more gets 429.
    pub per_user_max: usize,
    /// Events waiting for one client; a client that falls this far behind
    /// is disconnected; its browser reconnects and the history replays
    /// what it missed.
    pub queue_len: usize,
    /// Largest event payload (serialised JSON), in bytes.
    pub max_payload: usize,
    /// Tags a client may add with `?tag=`.
    pub max_client_tags: usize,
    /// The `retry:` field: how long the browser waits before reconnecting.
    pub retry: Duration,
    /// Keep the figures only `/metrics` needs (sends by target kind,
    /// latencies); off, the send path skips them.
    pub metrics: bool,
    /// Open streams per client address; one more gets 429. Without it,
    /// one address with a few dozen accounts could take every slot.
    pub per_address_max: usize,
    /// Published events kept for replay after a reconnect, at most.
    pub history_len: usize,
    /// How long a published event stays replayable.
    pub history_age: Duration,
    /// The history's framed bytes, at most (with `max_payload`, what
    /// bounds its memory).
    pub history_max_bytes: usize,
    /// Unread inbox notifications sent first on a stream that starts
    /// without `Last-Event-ID` (the newest ones), and stored ones resumed
    /// from the inbox when the history cannot resume a client (the newest
    /// ones); 0 sends none.
    pub inbox_replay_max: usize,
    /// Origins (`https://app.example.com`, exactly) whose pages may open
    /// the stream from another site, with a stream token. Empty: none.
    pub cors_origins: Vec<String>,
    /// How often presence is shared between processes and joins and
    /// leaves are announced (see [`crate::presence`]); zero: never.
    pub presence_interval: Duration,
    /// A member missing for less than this is not announced as leaving.
    pub presence_debounce: Duration,
}

impl Default for SseConfig {
    fn default() -> Self {
        SseConfig {
            ping_interval: Duration::from_secs(45),
            max_clients: 1000,
            per_user_max: 16,
            queue_len: 256,
            max_payload: 64 * 1024,
            max_client_tags: 8,
            retry: Duration::from_secs(3),
            metrics: true,
            per_address_max: 64,
            history_len: 10_000,
            history_age: Duration::from_secs(600),
            history_max_bytes: 64 * 1024 * 1024,
            inbox_replay_max: 100,
            cors_origins: Vec::new(),
            presence_interval: Duration::from_secs(1),
            presence_debounce: Duration::from_secs(2),
        }
    }
}
