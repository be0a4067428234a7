//! What the registry reports: client listings, filters and statistics.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::target::{ClientId, SessionId, Tag, UserId};

/// Narrows a client listing. Empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct ClientFilter {
    /// A user id or a username.
    pub user_or_name: Option<String>,
    pub session: Option<SessionId>,
    pub clients: Option<Vec<ClientId>>,
}

/// One connection, as `/api/sse/clients` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClientInfo {
    pub id: ClientId,
    pub user_id: UserId,
    pub username: String,
    pub session: SessionId,
    pub tags: Vec<Tag>,
    /// Unix milliseconds.
    pub connected_since: u64,
    pub events_sent: u64,
}

/// Aggregate figures, as `/api/sse/clients` and the dashboard show them.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub total_clients: usize,
    /// Username → open connections.
    pub clients_per_user: BTreeMap<String, usize>,
    /// Mean age of the open connections.
    pub average_connection_seconds: f64,
    /// Events written to clients (one per receiver).
    pub events_sent: u64,
    /// Sends by the backend (one per `send`, whatever its receivers).
    pub events_published: u64,
    /// Unix milliseconds of the last send.
    pub last_event_at: Option<u64>,
    pub connections_opened: u64,
    pub connections_closed: u64,
    /// With several server processes (the Redis bus): each one's share,
    /// this one first. Empty with one process.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<InstanceStats>,
}

/// One server process's share of the figures.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStats {
    pub instance: String,
    pub clients: usize,
    pub events_sent: u64,
    /// Unix milliseconds of the figures (its last report).
    pub reported_at: u64,
}

impl Stats {
    /// The figures without per-user or per-process detail, for callers
    /// who may not see other users' names.
    pub fn aggregate_only(mut self) -> Self {
        self.clients_per_user.clear();
        self.instances.clear();
        self
    }
}

/// See [`Registry::index_sizes`](super::Registry::index_sizes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexSizes {
    pub clients: usize,
    pub users: usize,
    pub sessions: usize,
    pub tags: usize,
    pub addresses: usize,
}
