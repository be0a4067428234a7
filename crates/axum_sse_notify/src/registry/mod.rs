//! The live connections of this process and their indexes.
//!
//! A send looks up its receivers through the index that matches the
//! target (user, session, tag or client id), so its cost grows with the
//! number of receivers, never with the number of connected clients. The
//! event is framed once into a [`Bytes`] and each receiver gets a cheap
//! clone of it in its bounded queue; nothing here ever waits for a socket.
//! Where a receiver's stream has nothing in flight and its server gives
//! out write turns (`lean_serve`), the send takes the turn instead of
//! waking the stream, and writes the queue to the socket itself once the
//! locks are released, without waiting (`claimed`).
//!
//! Every send also gets the next position of the `history` and is kept
//! there for replay. Sends are sequenced by the history's lock, held while
//! the event is queued for its receivers, so every client sees events in
//! id order; a client that resumes registers under the same lock, so each
//! event either reaches it live or is in what it replays, never both.
//! With a partitioned bus ([`crate::partition`]) there is one history per
//! partition, each with its own epoch and lock, and a connection belongs
//! to its user's: a send in one partition reaches only that partition's
//! connections.

mod admission;
mod claimed;
mod counts;
mod follow;
mod history;
mod index;
mod lifecycle;
mod link;
mod listing;
mod presence;
mod queue;
pub(crate) mod reason;
mod register;
mod registration;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Instant;

use bytes::Bytes;

use super::config::SseConfig;
use super::event::{Event, EventError, write_frame};
use super::event_id::{Epoch, InboxSeq, InboxStamp, Position, StreamId};
use super::metrics::SseMetrics;
use super::partition::{Partitions, Route};
use super::target::{ClientId, SessionId, Target, UserId};

use crate::clock::unix_millis;
pub use crate::clock::unix_millis_now;
pub use admission::Admission;
use claimed::Claimed;
use counts::Counters;
pub use counts::Counts;
use history::History;
pub use history::ResetReason;
use index::Indexes;
pub(crate) use link::{ClientLink, Next, Offer};
pub use listing::{ClientFilter, ClientInfo, IndexSizes, InstanceStats, Stats};
pub use presence::PresenceSnapshot;
use queue::Full;
pub use reason::DisconnectReason;
pub use register::{Peer, RegisterError};
#[cfg(feature = "inbox")]
pub(crate) use registration::reset_frame_with;
pub use registration::{Registration, Resume, StoredGap};

/// The registry. Shared as `Arc<Registry>`; see [`crate::Notifier`]
/// for the handle backend code uses.
pub struct Registry {
    config: SseConfig,
    indexes: RwLock<Indexes>,
    /// Shared with the tasks that write a broadcast (they count it).
    counters: Arc<Counters>,
    /// One per partition (one without a partitioned bus). Each is taken
    /// before `indexes` when both are needed, never after; never two at
    /// once.
    histories: Box<[Mutex<History>]>,
    partitions: Partitions,
    shutting_down: AtomicBool,
    /// Other processes' connections per user (with the Redis bus), so
    /// that `per_user_max` holds across the cluster, approximately: see
    /// [`Registry::set_remote_users`].
    remote_users: RwLock<HashMap<UserId, usize>>,
    /// What only `/metrics` needs (`None`: metrics are off).
    metrics: Option<Box<SseMetrics>>,
    /// Told of every session whose streams were ended (a sign-out here or,
    /// through the bus, anywhere): see [`Registry::on_session_end`].
    session_end: RwLock<Vec<SessionEndHook>>,
}

/// What [`Registry::on_session_end`] calls.
type SessionEndHook = Arc<dyn Fn(&SessionId) + Send + Sync>;

impl Registry {
    /// A registry with a new history (a random epoch): ids handed out by
    /// an earlier registry, e.g. before a restart, are answered with
    /// `sse-reset`.
    pub fn new(config: SseConfig) -> Self {
        Self::with_partitions(config, Partitions::ONE)
    }

    /// A registry for a partitioned bus: one history per partition, each
    /// bounded by `sse.history_len` entries and `sse.history_age`, and by
    /// its share of `sse.history_max_bytes` (so that the memory bound
    /// stays the configured one, wide events being copied into each).
    pub fn with_partitions(config: SseConfig, partitions: Partitions) -> Self {
        let max_bytes = config.history_max_bytes.div_ceil(partitions.count());
        let histories = (0..partitions.count())
            .map(|_| {
                Mutex::new(History::new(
                    Epoch::random(),
                    config.history_len,
                    config.history_age,
                    max_bytes,
                ))
            })
            .collect();
        let indexes = Indexes::new(config.max_clients, config.history_age);
        Registry {
            metrics: config.metrics.then(Box::default),
            config,
            indexes: RwLock::new(indexes),
            counters: Arc::default(),
            histories,
            partitions,
            shutting_down: AtomicBool::new(false),
            remote_users: RwLock::new(HashMap::new()),
            session_end: RwLock::new(Vec::new()),
        }
    }

    /// Calls `hook` with every session whose streams are ended by the app
    /// (a kick of a session, e.g. at sign-out), here or on another process
    /// (kicks travel the bus), from then on. For whatever the app keeps
    /// about a session beside the registry, e.g. a cache of who it is:
    /// the registry's own memory of ended sessions is bounded and
    /// refuses streams only for two minutes.
    pub fn on_session_end(&self, hook: impl Fn(&SessionId) + Send + Sync + 'static) {
        self.session_end
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::new(hook));
    }

    pub fn config(&self) -> &SseConfig {
        &self.config
    }

    /// Frames `event` once and queues it for every client `target`
    /// selects. Returns how many local connections it reached. Never
    /// waits: a client whose queue is full is disconnected instead.
    pub fn send(&self, target: &Target, event: &Event) -> Result<usize, EventError> {
        self.send_stored(target, event, None)
    }

    /// [`Registry::send`] for an event stored in the inbox: its id line
    /// carries the row's id and inbox position (`<event id>.<seq>:<inbox id>`).
    ///
    /// This is the process's own history: if it was following the shared
    /// stream of a bus (which is unreachable, or the bus would have been
    /// used), it starts a history of its own first, and every connected
    /// client is told so with an `sse-reset` (see `Registry::deliver`).
    pub fn send_stored(
        &self,
        target: &Target,
        event: &Event,
        inbox: Option<InboxStamp>,
    ) -> Result<usize, EventError> {
        self.check_size(event)?;
        match self.partitions.route(target) {
            Route::One(partition) => Ok(self.send_in(partition, target, event, inbox)),
            Route::Every => Ok((0..self.partitions.count())
                .map(|partition| self.send_in(partition, target, event, inbox))
                .sum()),
        }
    }

    /// The partitions of this registry (one without a partitioned bus).
    pub fn partitions(&self) -> Partitions {
        self.partitions
    }

    /// [`Registry::send_stored`] in one partition's history (checked
    /// for size by the caller).
    pub(crate) fn send_in(
        &self,
        partition: usize,
        target: &Target,
        event: &Event,
        inbox: Option<InboxStamp>,
    ) -> usize {
        let started = self.metrics.is_some().then(Instant::now);
        let mut history = self.lock_history(partition);
        if history.is_following() {
            tracing::warn!("bus unreachable: sending on this process's own history");
            self.restart_locked(
                (partition, &mut history),
                (Epoch::random(), Position::START, false),
                Vec::new(),
                true,
            );
        }
        let position = history.next_position();
        self.publish_locked(
            (partition, history),
            position,
            target,
            event,
            inbox,
            started,
        )
    }

    /// How many of this process's connections `target` selects now.
    pub fn count_matching(&self, target: &Target) -> usize {
        let indexes = self.read();
        if target.tags().is_empty() && matches!(target.scope(), super::target::Scope::All) {
            return indexes.clients.len();
        }
        let mut n = 0;
        indexes.for_each_match(target, |_, _| n += 1);
        n
    }

    pub(crate) fn check_size(&self, event: &Event) -> Result<(), EventError> {
        let size = event.data().len();
        if size > self.config.max_payload {
            return Err(EventError::PayloadTooLarge {
                size,
                max: self.config.max_payload,
            });
        }
        Ok(())
    }

    /// Frames the event at `position`, queues it for its receivers and
    /// keeps it in the history, all under the history's lock (so every
    /// client sees events in id order); returns the receivers, those of
    /// the history's partition only. `started`: when the send began, for
    /// the latency metric.
    fn publish_locked(
        &self,
        (partition, mut history): (usize, MutexGuard<'_, History>),
        position: Position,
        target: &Target,
        event: &Event,
        inbox: Option<InboxStamp>,
        started: Option<Instant>,
    ) -> usize {
        if let Some(stamp) = inbox {
            history.advance_seq(stamp.seq);
        }
        let id = history
            .stream_id(position)
            .with_inbox(inbox.map(|stamp| stamp.id));
        let frame = frame(id, event);

        let mut delivered = 0;
        let mut overflowed = Vec::new();
        let mut claimed = Claimed::new(self.counters.clone());
        let now_ms = unix_millis_now();
        let partitioned = self.partitions.count() > 1;
        self.read().for_each_match(target, |client, entry| {
            if partitioned && usize::from(entry.partition) != partition {
                return;
            }
            match entry.link.offer(frame.clone(), now_ms) {
                Ok(Offer::Queued) => delivered += 1,
                Ok(Offer::Claimed) => {
                    delivered += 1;
                    claimed.push(entry.link.clone());
                }
                Err(Full) => overflowed.push(client),
            }
        });
        history.record(
            position,
            target.clone(),
            frame,
            inbox.map(|stamp| stamp.id),
            Instant::now(),
        );
        drop(history);
        // Outside the locks: other sends and connects proceed meanwhile
        // (the turns taken keep each stream's events in order).
        claimed.write();
        for client in overflowed {
            tracing::warn!(%client, queue_len = self.config.queue_len, "client fell behind; disconnecting");
            self.disconnect(client, DisconnectReason::QueueOverflow);
        }
        // With partitions a wide send is delivered once per partition
        // here: the bus counts sends instead (`Registry::count_send`).
        self.count_published(self.partitions.count() == 1);
        if let (Some(metrics), Some(started)) = (&self.metrics, started) {
            metrics.sent(started);
        }
        delivered
    }

    /// Ends one connection now (its stream closes with `reason`).
    pub fn disconnect(&self, client: ClientId, reason: DisconnectReason) -> bool {
        let removed = self.write().remove(client);
        match removed {
            Some(entry) => {
                entry.link.close(reason);
                true
            }
            None => false,
        }
    }

    /// Ends every connection the target selects (e.g. a user's streams at
    /// sign-out). Returns how many.
    pub fn disconnect_matching(&self, target: &Target, reason: DisconnectReason) -> usize {
        // A session's streams ended by the app (sign-out): a request of
        // that session still on its way to registering is refused too.
        // Recorded before the streams are looked up, under the lock
        // registration takes, so none falls between the two.
        if reason == DisconnectReason::Kicked
            && target.tags().is_empty()
            && let super::target::Scope::Session(session) = target.scope()
        {
            self.write().ended.record(session.clone(), Instant::now());
            let hooks = self
                .session_end
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            for hook in hooks {
                hook(session);
            }
        }
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
        for entry in self.remove_some(usize::MAX) {
            entry.link.close(DisconnectReason::Shutdown);
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
            addresses: indexes.by_addr.len(),
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
                username: entry.username.to_string(),
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
            instances: Vec::new(),
        }
    }

    /// Forgets a client whose connection ended (its guard calls this).
    fn unregister(&self, client: ClientId, link: &Arc<ClientLink>, reason: DisconnectReason) {
        self.write().remove_link(client, link);
        self.count_disconnect(reason);
    }

    /// Counts `n` replayed events written to a client's socket.
    fn count_sent_n(&self, link: &ClientLink, n: u64) {
        if n > 0 {
            link.events_sent.fetch_add(n, Ordering::Relaxed);
            self.counters.events_sent.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// One partition's history; `partition` is below the count (a
    /// larger one is taken as the last: every caller derives it from
    /// [`Partitions`], so this never happens).
    fn lock_history(&self, partition: usize) -> MutexGuard<'_, History> {
        let index = partition.min(self.histories.len() - 1);
        // Like the indexes: updated in single, non-panicking steps.
        self.histories[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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

/// The event's bytes on the wire, its id line `id` (with the inbox row's
/// id when it is stored: `<event id>.<seq>:<inbox id>`).
pub(crate) fn frame(id: StreamId, event: &Event) -> Bytes {
    let id = id.to_string();
    let mut out = Vec::with_capacity(id.len() + event.data().len() + 32);
    write_frame(&mut out, Some(&id), event.name(), event.data());
    Bytes::from(out)
}

impl Registry {
    /// Where the inbox's publish order stands when the inbox starts (read
    /// from the database): ids carry it from then on. Only the first call
    /// counts (see `History::start_seq`).
    pub fn start_inbox_seq(&self, seq: InboxSeq) {
        for partition in 0..self.histories.len() {
            self.lock_history(partition).start_seq(seq);
        }
    }

    /// Whether the inbox position is known (the inbox started), in every
    /// partition's history.
    pub fn knows_inbox_seq(&self) -> bool {
        (0..self.histories.len()).all(|partition| self.lock_history(partition).seq().is_some())
    }
}

#[cfg(test)]
mod tests;
