//! The live connections of this process and their indexes.
//!
//! A send looks up its receivers through the index that matches the
//! target (user, session, tag or client id), so its cost grows with the
//! number of receivers, never with the number of connected clients. The
//! event is framed once into a [`Bytes`] and each receiver gets a cheap
//! clone of it in its bounded queue; nothing here ever waits for a socket.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{Notify, mpsc};

use super::config::SseConfig;
use super::event::{Event, EventError, write_frame};
use super::target::{ClientId, Identity, Scope, SessionId, Tag, Target, UserId};

/// Why a connection ended. Logged, and counted in the stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum DisconnectReason {
    /// The browser closed the connection (tab closed, navigation).
    ClientClosed = 1,
    /// Writing to the socket failed.
    WriteError = 2,
    /// The socket accepted no bytes for `client_timeout`.
    IdleTimeout = 3,
    /// The client fell `queue_len` events behind.
    QueueOverflow = 4,
    /// The server is shutting down.
    Shutdown = 5,
    /// Closed by the application (e.g. the user signed out).
    Kicked = 6,
}

impl DisconnectReason {
    fn from_u8(n: u8) -> Option<Self> {
        Some(match n {
            1 => Self::ClientClosed,
            2 => Self::WriteError,
            3 => Self::IdleTimeout,
            4 => Self::QueueOverflow,
            5 => Self::Shutdown,
            6 => Self::Kicked,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientClosed => "client closed",
            Self::WriteError => "write error",
            Self::IdleTimeout => "idle timeout",
            Self::QueueOverflow => "queue overflow",
            Self::Shutdown => "shutdown",
            Self::Kicked => "closed by the server",
        }
    }
}

/// A one-shot "this connection must end, because …" shared by the registry
/// (which decides) and the connection stream (which obeys).
#[derive(Default)]
pub(crate) struct CloseSignal {
    reason: AtomicU8,
    notify: Notify,
}

impl CloseSignal {
    /// Records the first reason only; later ones lose.
    pub(crate) fn close(&self, reason: DisconnectReason) {
        if self
            .reason
            .compare_exchange(0, reason as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // notify_one stores a permit if the stream is not waiting yet.
            self.notify.notify_one();
        }
    }

    pub(crate) fn reason(&self) -> Option<DisconnectReason> {
        DisconnectReason::from_u8(self.reason.load(Ordering::Acquire))
    }

    pub(crate) async fn closed(&self) -> DisconnectReason {
        loop {
            if let Some(reason) = self.reason() {
                return reason;
            }
            self.notify.notified().await;
        }
    }
}

/// State shared between a registry entry and its stream.
pub(crate) struct ClientLink {
    pub(crate) close: CloseSignal,
    pub(crate) events_sent: AtomicU64,
}

/// One connection as the registry sees it.
struct Entry {
    user: UserId,
    username: Arc<str>,
    session: SessionId,
    tags: Box<[Tag]>,
    connected_at: SystemTime,
    since: Instant,
    queue: mpsc::Sender<Bytes>,
    link: Arc<ClientLink>,
}

impl Entry {
    fn has_tags(&self, tags: &[Tag]) -> bool {
        tags.iter().all(|t| self.tags.contains(t))
    }
}

#[derive(Default)]
struct Indexes {
    clients: HashMap<ClientId, Entry>,
    by_user: HashMap<UserId, Vec<ClientId>>,
    by_session: HashMap<SessionId, Vec<ClientId>>,
    by_tag: HashMap<Tag, HashSet<ClientId>>,
}

impl Indexes {
    fn insert(&mut self, id: ClientId, entry: Entry) {
        self.by_user.entry(entry.user.clone()).or_default().push(id);
        self.by_session
            .entry(entry.session.clone())
            .or_default()
            .push(id);
        for tag in entry.tags.iter() {
            self.by_tag.entry(tag.clone()).or_default().insert(id);
        }
        self.clients.insert(id, entry);
    }

    /// Removes the client and every index entry pointing at it; empty
    /// index buckets go too, so nothing grows with clients that left.
    fn remove(&mut self, id: ClientId) -> Option<Entry> {
        let entry = self.clients.remove(&id)?;
        remove_from_bucket(&mut self.by_user, &entry.user, id);
        remove_from_bucket(&mut self.by_session, &entry.session, id);
        for tag in entry.tags.iter() {
            if let Some(set) = self.by_tag.get_mut(tag) {
                set.remove(&id);
                if set.is_empty() {
                    self.by_tag.remove(tag);
                }
            }
        }
        Some(entry)
    }

    /// Calls `f` for every client the target selects, each once.
    fn for_each_match(&self, target: &Target, mut f: impl FnMut(ClientId, &Entry)) {
        let tags = target.tags();
        let mut visit = |id: &ClientId| {
            if let Some(entry) = self.clients.get(id)
                && entry.has_tags(tags)
            {
                f(*id, entry);
            }
        };
        match target.scope() {
            Scope::All => match tags
                .iter()
                .map(|t| self.by_tag.get(t))
                .min_by_key(|set| set.map_or(0, HashSet::len))
            {
                // No tags: everyone.
                None => self.clients.keys().for_each(&mut visit),
                // Start from the smallest tag bucket; an unknown tag
                // matches nobody.
                Some(Some(set)) => set.iter().for_each(&mut visit),
                Some(None) => {}
            },
            Scope::User(user) => {
                if let Some(ids) = self.by_user.get(user) {
                    ids.iter().for_each(&mut visit);
                }
            }
            Scope::Session(session) => {
                if let Some(ids) = self.by_session.get(session) {
                    ids.iter().for_each(&mut visit);
                }
            }
            Scope::Clients(ids) => {
                let mut seen = HashSet::with_capacity(ids.len());
                for id in ids {
                    if seen.insert(*id) {
                        visit(id);
                    }
                }
            }
        }
    }
}

fn remove_from_bucket<K: std::hash::Hash + Eq>(
    index: &mut HashMap<K, Vec<ClientId>>,
    key: &K,
    id: ClientId,
) {
    if let Some(ids) = index.get_mut(key) {
        ids.retain(|x| *x != id);
        if ids.is_empty() {
            index.remove(key);
        }
    }
}

/// Why a new connection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("the server holds its maximum of {max} connections")]
    TooManyClients { max: usize },
    #[error("this user already has {max} open connections")]
    TooManyForUser { max: usize },
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// Counters that outlive individual connections.
#[derive(Default)]
struct Counters {
    /// Events written to sockets (one per receiver).
    events_sent: AtomicU64,
    /// Sends (one per `send` call that reached anyone or not).
    events_published: AtomicU64,
    /// Unix milliseconds of the last send; 0 = never.
    last_event_at: AtomicU64,
    connections_opened: AtomicU64,
    connections_closed: AtomicU64,
}

/// The registry. Shared as `Arc<Registry>`; see [`crate::sse::Notifier`]
/// for the handle backend code uses.
pub struct Registry {
    config: SseConfig,
    indexes: RwLock<Indexes>,
    counters: Counters,
    next_event_id: AtomicU64,
    shutting_down: AtomicBool,
}

/// A client admitted by [`Registry::register`]: its queue's receiving end
/// and the guard that unregisters it when dropped. The SSE route turns it
/// into a stream; benchmarks and tests read the queue directly.
pub struct Registration {
    pub(crate) id: ClientId,
    pub(crate) queue: mpsc::Receiver<Bytes>,
    pub(crate) guard: ClientGuard,
}

impl Registration {
    pub fn id(&self) -> ClientId {
        self.id
    }

    /// The next framed event, if one is queued.
    pub fn try_next(&mut self) -> Option<Bytes> {
        self.queue.try_recv().ok()
    }
}

impl Registry {
    pub fn new(config: SseConfig) -> Self {
        // Event ids start at the current time in microseconds, so they keep
        // increasing across restarts and a browser's Last-Event-ID from
        // before a restart is still older than every new event.
        let first_id = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        Registry {
            config,
            indexes: RwLock::new(Indexes::default()),
            counters: Counters::default(),
            next_event_id: AtomicU64::new(first_id),
            shutting_down: AtomicBool::new(false),
        }
    }

    pub fn config(&self) -> &SseConfig {
        &self.config
    }

    /// Admits a connection, or says why not. Limits are checked under the
    /// same lock as the insert, so concurrent connects cannot overshoot.
    pub fn register(
        self: &Arc<Self>,
        identity: &Identity,
        client_tags: Vec<Tag>,
    ) -> Result<Registration, RegisterError> {
        let id = ClientId::random();
        let (tx, rx) = mpsc::channel(self.config.queue_len.max(1));
        let link = Arc::new(ClientLink {
            close: CloseSignal::default(),
            events_sent: AtomicU64::new(0),
        });
        let mut tags: Vec<Tag> = identity.tags.clone();
        for tag in client_tags {
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        let entry = Entry {
            user: identity.user.clone(),
            username: identity.username.as_str().into(),
            session: identity.session.clone(),
            tags: tags.into_boxed_slice(),
            connected_at: SystemTime::now(),
            since: Instant::now(),
            queue: tx,
            link: link.clone(),
        };
        {
            let mut indexes = self.write();
            if self.shutting_down.load(Ordering::Acquire) {
                return Err(RegisterError::ShuttingDown);
            }
            if indexes.clients.len() >= self.config.max_clients {
                return Err(RegisterError::TooManyClients {
                    max: self.config.max_clients,
                });
            }
            let of_user = indexes.by_user.get(&identity.user).map_or(0, Vec::len);
            if of_user >= self.config.per_user_max {
                return Err(RegisterError::TooManyForUser {
                    max: self.config.per_user_max,
                });
            }
            indexes.insert(id, entry);
        }
        self.counters
            .connections_opened
            .fetch_add(1, Ordering::Relaxed);
        Ok(Registration {
            id,
            queue: rx,
            guard: ClientGuard {
                registry: self.clone(),
                id,
                user: identity.user.clone(),
                since: Instant::now(),
                link,
            },
        })
    }

    /// Frames `event` once and queues it for every client `target`
    /// selects. Returns how many local connections it reached. Never
    /// waits: a client whose queue is full is disconnected instead.
    pub fn send(&self, target: &Target, event: &Event) -> Result<usize, EventError> {
        let size = event.data().len();
        if size > self.config.max_payload {
            return Err(EventError::PayloadTooLarge {
                size,
                max: self.config.max_payload,
            });
        }
        let id = self.next_event_id.fetch_add(1, Ordering::Relaxed);
        let mut frame = Vec::new();
        write_frame(&mut frame, Some(id), event.name(), event.data());
        let frame = Bytes::from(frame);

        let mut delivered = 0;
        let mut overflowed = Vec::new();
        self.read().for_each_match(target, |client, entry| {
            match entry.queue.try_send(frame.clone()) {
                Ok(()) => delivered += 1,
                Err(mpsc::error::TrySendError::Full(_)) => overflowed.push(client),
                // The stream is ending; its guard removes the entry.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        });
        for client in overflowed {
            tracing::warn!(%client, queue_len = self.config.queue_len, "client fell behind; disconnecting");
            self.disconnect(client, DisconnectReason::QueueOverflow);
        }
        self.counters
            .events_published
            .fetch_add(1, Ordering::Relaxed);
        self.counters
            .last_event_at
            .store(unix_millis(SystemTime::now()), Ordering::Relaxed);
        Ok(delivered)
    }

    /// Ends one connection now (its stream closes with `reason`).
    pub fn disconnect(&self, client: ClientId, reason: DisconnectReason) -> bool {
        let removed = self.write().remove(client);
        match removed {
            Some(entry) => {
                entry.link.close.close(reason);
                true
            }
            None => false,
        }
    }

    /// Ends every connection the target selects (e.g. a user's streams at
    /// sign-out). Returns how many.
    pub fn disconnect_matching(&self, target: &Target, reason: DisconnectReason) -> usize {
        let mut ids = Vec::new();
        self.read().for_each_match(target, |id, _| ids.push(id));
        ids.into_iter()
            .filter(|id| self.disconnect(*id, reason))
            .count()
    }

    /// Refuses new connections and ends every open stream with
    /// [`DisconnectReason::Shutdown`].
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        let entries: Vec<Entry> = {
            let mut indexes = self.write();
            let ids: Vec<ClientId> = indexes.clients.keys().copied().collect();
            ids.into_iter()
                .filter_map(|id| indexes.remove(id))
                .collect()
        };
        for entry in entries {
            entry.link.close.close(DisconnectReason::Shutdown);
        }
    }

    /// Number of open connections.
    pub fn len(&self) -> usize {
        self.read().clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sizes of every index, to prove that nothing leaks.
    pub fn index_sizes(&self) -> IndexSizes {
        let indexes = self.read();
        IndexSizes {
            clients: indexes.clients.len(),
            users: indexes.by_user.len(),
            sessions: indexes.by_session.len(),
            tags: indexes.by_tag.len(),
        }
    }

    /// The clients that match `filter`, newest connection last.
    pub fn clients(&self, filter: &ClientFilter) -> Vec<ClientInfo> {
        let indexes = self.read();
        let mut out: Vec<ClientInfo> = indexes
            .clients
            .iter()
            .filter(|(id, entry)| filter.matches(**id, entry))
            .map(|(id, entry)| ClientInfo {
                id: *id,
                user_id: entry.user.clone(),
                user: entry.username.to_string(),
                session: entry.session.clone(),
                tags: entry.tags.to_vec(),
                connected_since: unix_millis(entry.connected_at),
                events_sent: entry.link.events_sent.load(Ordering::Relaxed),
            })
            .collect();
        out.sort_by_key(|c| (c.connected_since, c.id));
        out
    }

    /// Aggregate figures over this process's connections.
    pub fn stats(&self) -> Stats {
        let indexes = self.read();
        let now = Instant::now();
        let mut per_user = BTreeMap::new();
        let mut total_secs = 0.0;
        for entry in indexes.clients.values() {
            *per_user.entry(entry.username.to_string()).or_insert(0) += 1;
            total_secs += now.duration_since(entry.since).as_secs_f64();
        }
        let total = indexes.clients.len();
        let last = self.counters.last_event_at.load(Ordering::Relaxed);
        Stats {
            total_clients: total,
            clients_per_user: per_user,
            average_connection_seconds: if total == 0 {
                0.0
            } else {
                total_secs / total as f64
            },
            events_sent: self.counters.events_sent.load(Ordering::Relaxed),
            events_published: self.counters.events_published.load(Ordering::Relaxed),
            last_event_at: (last != 0).then_some(last),
            connections_opened: self.counters.connections_opened.load(Ordering::Relaxed),
            connections_closed: self.counters.connections_closed.load(Ordering::Relaxed),
        }
    }

    /// Counts one event written to a client's socket.
    pub(crate) fn count_sent(&self, link: &ClientLink) {
        link.events_sent.fetch_add(1, Ordering::Relaxed);
        self.counters.events_sent.fetch_add(1, Ordering::Relaxed);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Indexes> {
        // A panic elsewhere must not take the registry down with it: the
        // indexes are updated in single, non-panicking steps.
        self.indexes.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Indexes> {
        self.indexes.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Unregisters its client when dropped, whatever ended the connection:
/// the one place where a connection's end is recorded and logged.
pub(crate) struct ClientGuard {
    registry: Arc<Registry>,
    id: ClientId,
    user: UserId,
    since: Instant,
    pub(crate) link: Arc<ClientLink>,
}

impl ClientGuard {
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Ends the connection with `fallback` unless a reason was already set.
    pub(crate) fn finish(&self, fallback: DisconnectReason) -> DisconnectReason {
        self.link.close.close(fallback);
        self.link.close.reason().unwrap_or(fallback)
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.registry.write().remove(self.id);
        self.registry
            .counters
            .connections_closed
            .fetch_add(1, Ordering::Relaxed);
        let reason = self
            .link
            .close
            .reason()
            .unwrap_or(DisconnectReason::ClientClosed);
        let duration = self.since.elapsed();
        let events_sent = self.link.events_sent.load(Ordering::Relaxed);
        if self.registry.config.enable_logging {
            tracing::info!(client = %self.id, user = %self.user, reason = reason.as_str(),
                duration = ?round_ms(duration), events_sent, "sse client disconnected");
        } else {
            tracing::debug!(client = %self.id, user = %self.user, reason = reason.as_str(),
                duration = ?round_ms(duration), events_sent, "sse client disconnected");
        }
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// Now, in Unix milliseconds (the unit of every timestamp in the API).
pub fn unix_millis_now() -> u64 {
    unix_millis(SystemTime::now())
}

pub(crate) fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Narrows a client listing. Empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct ClientFilter {
    /// A user id or a username.
    pub user: Option<String>,
    pub session: Option<SessionId>,
    pub clients: Option<Vec<ClientId>>,
}

impl ClientFilter {
    fn matches(&self, id: ClientId, entry: &Entry) -> bool {
        self.user
            .as_deref()
            .is_none_or(|u| entry.user.as_str() == u || &*entry.username == u)
            && self.session.as_ref().is_none_or(|s| &entry.session == s)
            && self.clients.as_ref().is_none_or(|ids| ids.contains(&id))
    }
}

/// One connection, as `/api/sse/clients` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClientInfo {
    pub id: ClientId,
    pub user_id: UserId,
    /// The username.
    pub user: String,
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
}

impl Stats {
    /// The figures without per-user detail, for callers who may not see
    /// other users' names.
    pub fn aggregate_only(mut self) -> Self {
        self.clients_per_user.clear();
        self
    }
}

/// See [`Registry::index_sizes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexSizes {
    pub clients: usize,
    pub users: usize,
    pub sessions: usize,
    pub tags: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::event::Event;

    fn config() -> SseConfig {
        SseConfig {
            queue_len: 4,
            max_clients: 10_000,
            per_user_max: 100,
            ..SseConfig::default()
        }
    }

    fn identity(user: &str, session: &str, tags: &[&str]) -> Identity {
        Identity {
            user: UserId::new(user),
            username: format!("name-{user}"),
            session: SessionId::new(session),
            tags: tags.iter().map(|t| Tag::parse(t).unwrap()).collect(),
        }
    }

    fn event(n: u32) -> Event {
        Event::new("test", &serde_json::json!({ "n": n })).unwrap()
    }

    /// Pulls everything queued for a client, as text.
    fn drain(reg: &mut Registration) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(frame) = reg.queue.try_recv() {
            out.push(String::from_utf8(frame.to_vec()).unwrap());
        }
        out
    }

    struct World {
        registry: Arc<Registry>,
        a1: Registration, // user a, session s1, page:home
        a2: Registration, // user a, session s2, page:settings
        b1: Registration, // user b, session s3, page:home, role:admin
        c1: Registration, // user c, session s4
    }

    fn world() -> World {
        let registry = Arc::new(Registry::new(config()));
        let a1 = registry
            .register(
                &identity("a", "s1", &[]),
                vec![Tag::parse("page:home").unwrap()],
            )
            .unwrap();
        let a2 = registry
            .register(
                &identity("a", "s2", &[]),
                vec![Tag::parse("page:settings").unwrap()],
            )
            .unwrap();
        let b1 = registry
            .register(
                &identity("b", "s3", &["role:admin"]),
                vec![Tag::parse("page:home").unwrap()],
            )
            .unwrap();
        let c1 = registry
            .register(&identity("c", "s4", &[]), vec![])
            .unwrap();
        World {
            registry,
            a1,
            a2,
            b1,
            c1,
        }
    }

    /// Sends one event and returns which of a1, a2, b1, c1 got it.
    fn receivers(w: &mut World, target: Target) -> (usize, [bool; 4]) {
        let n = w.registry.send(&target, &event(1)).unwrap();
        let got = [
            drain(&mut w.a1).len() == 1,
            drain(&mut w.a2).len() == 1,
            drain(&mut w.b1).len() == 1,
            drain(&mut w.c1).len() == 1,
        ];
        (n, got)
    }

    #[test]
    fn each_target_kind_reaches_exactly_its_clients() {
        let mut w = world();
        let a1 = w.a1.id;
        let c1 = w.c1.id;
        let cases = [
            (Target::all(), [true, true, true, true]),
            (Target::user(UserId::new("a")), [true, true, false, false]),
            (Target::user(UserId::new("b")), [false, false, true, false]),
            (Target::user(UserId::new("nobody")), [false; 4]),
            (
                Target::session(SessionId::new("s2")),
                [false, true, false, false],
            ),
            (Target::clients([a1, c1]), [true, false, false, true]),
            (Target::clients([a1, a1]), [true, false, false, false]),
            (Target::tag("page", "home"), [true, false, true, false]),
            (Target::tag("role", "admin"), [false, false, true, false]),
            (Target::tag("page", "nowhere"), [false; 4]),
            // Combinations narrow.
            (
                Target::user(UserId::new("a")).with_tag("page", "home"),
                [true, false, false, false],
            ),
            (
                Target::tag("page", "home").with_tag("role", "admin"),
                [false, false, true, false],
            ),
            (
                Target::session(SessionId::new("s1")).with_tag("page", "settings"),
                [false; 4],
            ),
            (
                Target::clients([a1, c1]).with_tag("page", "home"),
                [true, false, false, false],
            ),
        ];
        for (target, expected) in cases {
            let (n, got) = receivers(&mut w, target.clone());
            assert_eq!(got, expected, "{target:?}");
            assert_eq!(n, expected.iter().filter(|x| **x).count(), "{target:?}");
        }
    }

    #[test]
    fn a_broadcast_is_framed_once_with_an_id() {
        let mut w = world();
        w.registry.send(&Target::all(), &event(7)).unwrap();
        let a = drain(&mut w.a1);
        let c = drain(&mut w.c1);
        assert_eq!(a, c);
        assert!(a[0].starts_with("id: "), "{a:?}");
        assert!(a[0].ends_with("event: test\ndata: {\"n\":7}\n\n"), "{a:?}");
        // Ids increase.
        w.registry.send(&Target::all(), &event(8)).unwrap();
        let id = |s: &str| s[4..s.find('\n').unwrap()].parse::<u64>().unwrap();
        assert!(id(&drain(&mut w.a1)[0]) > id(&a[0]));
    }

    #[test]
    fn oversized_payloads_are_refused_not_truncated() {
        let mut w = world();
        let max = w.registry.config().max_payload;
        let big = Event::text("big", "x".repeat(max + 1)).unwrap();
        assert_eq!(
            w.registry.send(&Target::all(), &big),
            Err(EventError::PayloadTooLarge { size: max + 1, max })
        );
        assert!(drain(&mut w.a1).is_empty());
        let fits = Event::text("big", "x".repeat(max)).unwrap();
        assert_eq!(w.registry.send(&Target::all(), &fits), Ok(4));
    }

    #[test]
    fn every_kind_of_end_cleans_every_index() {
        let empty = IndexSizes::default();

        // Dropping the registration (the stream ended: client closed,
        // write error, idle timeout).
        let w = world();
        let registry = w.registry.clone();
        drop(w);
        assert_eq!(registry.index_sizes(), empty);
        assert_eq!(registry.stats().connections_closed, 4);

        // Disconnect by the server, then the stream ends.
        let w = world();
        assert!(w.registry.disconnect(w.a1.id, DisconnectReason::Kicked));
        assert_eq!(
            w.a1.guard.link.close.reason(),
            Some(DisconnectReason::Kicked)
        );
        assert_eq!(
            w.registry
                .disconnect_matching(&Target::tag("role", "admin"), DisconnectReason::Kicked),
            1
        );
        let registry = w.registry.clone();
        assert_eq!(registry.len(), 2);
        drop(w);
        assert_eq!(registry.index_sizes(), empty);

        // Shutdown.
        let w = world();
        w.registry.shutdown();
        assert_eq!(w.registry.index_sizes(), empty);
        for reg in [&w.a1, &w.a2, &w.b1, &w.c1] {
            assert_eq!(
                reg.guard.link.close.reason(),
                Some(DisconnectReason::Shutdown)
            );
        }
        assert_eq!(
            w.registry.register(&identity("z", "s9", &[]), vec![]).err(),
            Some(RegisterError::ShuttingDown)
        );
    }

    #[test]
    fn overflow_disconnects_only_the_slow_client() {
        let mut w = world();
        let queue_len = w.registry.config().queue_len;
        // a1 keeps up; everyone else never reads.
        for n in 0..queue_len as u32 {
            w.registry
                .send(&Target::user(UserId::new("a")), &event(n))
                .unwrap();
            drain(&mut w.a1);
        }
        // a2 is now full; the next send overflows it and only it.
        let reached = w
            .registry
            .send(&Target::user(UserId::new("a")), &event(99))
            .unwrap();
        assert_eq!(reached, 1);
        assert_eq!(
            w.a2.guard.link.close.reason(),
            Some(DisconnectReason::QueueOverflow)
        );
        assert_eq!(w.a1.guard.link.close.reason(), None);
        assert_eq!(w.registry.len(), 3);
        assert_eq!(drain(&mut w.a1).len(), 1);
        // Others are untouched.
        assert_eq!(w.registry.send(&Target::all(), &event(100)).unwrap(), 3);
    }

    #[test]
    fn limits_are_enforced() {
        let registry = Arc::new(Registry::new(SseConfig {
            max_clients: 3,
            per_user_max: 2,
            ..SseConfig::default()
        }));
        let a = identity("a", "s", &[]);
        let _r1 = registry.register(&a, vec![]).unwrap();
        let r2 = registry.register(&a, vec![]).unwrap();
        assert_eq!(
            registry.register(&a, vec![]).err(),
            Some(RegisterError::TooManyForUser { max: 2 })
        );
        let _r3 = registry.register(&identity("b", "t", &[]), vec![]).unwrap();
        assert_eq!(
            registry.register(&identity("c", "u", &[]), vec![]).err(),
            Some(RegisterError::TooManyClients { max: 3 })
        );
        drop(r2);
        assert!(registry.register(&a, vec![]).is_ok());
    }

    #[test]
    fn listing_filters_and_stats() {
        let w = world();
        let all = w.registry.clients(&ClientFilter::default());
        assert_eq!(all.len(), 4);
        let by_name = w.registry.clients(&ClientFilter {
            user: Some("name-a".into()),
            ..Default::default()
        });
        let by_id = w.registry.clients(&ClientFilter {
            user: Some("a".into()),
            ..Default::default()
        });
        assert_eq!(by_name, by_id);
        assert_eq!(by_id.len(), 2);
        let by_session = w.registry.clients(&ClientFilter {
            session: Some(SessionId::new("s3")),
            ..Default::default()
        });
        assert_eq!(by_session.len(), 1);
        assert_eq!(by_session[0].id, w.b1.id);
        assert_eq!(
            by_session[0].tags,
            vec![
                Tag::parse("role:admin").unwrap(),
                Tag::parse("page:home").unwrap()
            ]
        );
        let by_ids = w.registry.clients(&ClientFilter {
            clients: Some(vec![w.c1.id, w.a2.id]),
            ..Default::default()
        });
        assert_eq!(by_ids.len(), 2);

        let stats = w.registry.stats();
        assert_eq!(stats.total_clients, 4);
        assert_eq!(stats.clients_per_user.get("name-a"), Some(&2));
        assert_eq!(stats.last_event_at, None);
        w.registry.send(&Target::all(), &event(1)).unwrap();
        let stats = w.registry.stats();
        assert_eq!(stats.events_published, 1);
        assert!(stats.last_event_at.is_some());
        assert!(stats.aggregate_only().clients_per_user.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_connect_send_disconnect_leaves_an_empty_registry() {
        let registry = Arc::new(Registry::new(SseConfig {
            queue_len: 2,
            max_clients: 100_000,
            per_user_max: 100_000,
            ..SseConfig::default()
        }));
        let mut tasks = Vec::new();
        for t in 0..16u32 {
            let registry = registry.clone();
            tasks.push(tokio::spawn(async move {
                let mut held = Vec::new();
                for i in 0..300u32 {
                    let who = identity(
                        &format!("u{}", i % 7),
                        &format!("s{t}-{}", i % 5),
                        &["role:user"],
                    );
                    let tags = vec![Tag::new("page", &format!("p{}", i % 3)).unwrap()];
                    if let Ok(reg) = registry.register(&who, tags) {
                        held.push(reg);
                    }
                    let target = match i % 4 {
                        0 => Target::all(),
                        1 => Target::user(UserId::new(format!("u{}", i % 7))),
                        2 => Target::tag("page", "p1"),
                        _ => Target::session(SessionId::new(format!("s{t}-1"))),
                    };
                    registry.send(&target, &event(i)).unwrap();
                    if i % 3 == 0 && !held.is_empty() {
                        let reg = held.swap_remove((i as usize * 7) % held.len());
                        if i % 2 == 0 {
                            registry.disconnect(reg.id, DisconnectReason::Kicked);
                        }
                        drop(reg);
                    }
                    if i % 50 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                drop(held);
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(registry.index_sizes(), IndexSizes::default());
        let stats = registry.stats();
        assert_eq!(stats.connections_opened, stats.connections_closed);
        assert_eq!(stats.connections_opened, 16 * 300);
    }
}
