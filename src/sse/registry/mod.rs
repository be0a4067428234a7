//! The live connections of this process and their indexes.
//!
//! A send looks up its receivers through the index that matches the
//! target (user, session, tag or client id), so its cost grows with the
//! number of receivers, never with the number of connected clients. The
//! event is framed once into a [`Bytes`] and each receiver gets a cheap
//! clone of it in its bounded queue; nothing here ever waits for a socket.

mod index;
mod lifecycle;
mod listing;
mod queue;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};

use super::config::SseConfig;
use super::event::{Event, EventError, write_frame};
use super::target::{ClientId, Identity, Tag, Target};
use crate::http::SocketState;

use index::{Entry, Indexes};
use lifecycle::ClientGuard;
pub use lifecycle::DisconnectReason;
pub(crate) use lifecycle::{ClientLink, Next};
pub(crate) use listing::unix_millis;
pub use listing::{ClientFilter, ClientInfo, IndexSizes, Stats, unix_millis_now};
use queue::Full;

/// Why a new connection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("the server holds its maximum of {max} connections")]
    TooManyClients { max: usize },
    #[error("this user already has {max} open connections")]
    TooManyForUser { max: usize },
    #[error("this address already has {max} open connections")]
    TooManyForAddress { max: usize },
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// Where a connection comes from, as far as the registry cares: the
/// client's address (for `per_address_max`) and its socket (so that an
/// end decided here also frees the socket). Both optional: benchmarks and
/// tests register without a socket.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    pub addr: Option<IpAddr>,
    pub socket: Option<Arc<SocketState>>,
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

/// A client admitted by [`Registry::register`]: the receiving end of its
/// queue, and the guard that unregisters it when dropped. The SSE route
/// turns it into a stream ([`Registration::poll_batch`]); benchmarks and
/// tests read the queue directly ([`Registration::try_next`]).
pub struct Registration {
    id: ClientId,
    guard: ClientGuard,
}

impl Registration {
    pub fn id(&self) -> ClientId {
        self.id
    }

    /// The next framed event, if one is queued.
    pub fn try_next(&mut self) -> Option<Bytes> {
        self.guard.link().queue.pop()
    }

    /// What the stream writes next: the end, if one was decided (it wins
    /// over queued events); else every queued event joined into one chunk
    /// of at most about `max_bytes` (a burst costs one write, not one per
    /// event), each counted as sent; else `Pending`, with `cx`'s waker kept
    /// for the next event or the end.
    pub(crate) fn poll_batch(&mut self, cx: &mut Context<'_>, max_bytes: usize) -> Poll<Next> {
        let link = self.guard.link();
        let first = match link.poll_next(cx) {
            Poll::Ready(Next::Write(first)) => first,
            other => return other,
        };
        let registry = self.guard.registry();
        registry.count_sent(link);
        let Some(mut more) = link.queue.pop() else {
            return Poll::Ready(Next::Write(first));
        };
        let mut out = BytesMut::with_capacity(max_bytes.min(first.len() * 4 + more.len()));
        out.extend_from_slice(&first);
        loop {
            registry.count_sent(link);
            out.extend_from_slice(&more);
            if out.len() >= max_bytes {
                break;
            }
            match link.queue.pop() {
                Some(next) => more = next,
                None => break,
            }
        }
        Poll::Ready(Next::Write(out.freeze()))
    }

    /// Ends the connection with `seen` (how the stream saw it end) unless
    /// the registry had already decided a reason; returns the reason kept.
    pub(crate) fn finish(&self, seen: DisconnectReason) -> DisconnectReason {
        self.guard.finish(seen)
    }

    /// The reason the connection must end, once one was decided.
    pub fn end_reason(&self) -> Option<DisconnectReason> {
        self.guard.link().reason()
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

    /// Admits a connection from nowhere in particular (no address, no
    /// socket); see [`Registry::register_from`].
    pub fn register(
        self: &Arc<Self>,
        identity: &Identity,
        client_tags: Vec<Tag>,
    ) -> Result<Registration, RegisterError> {
        self.register_from(identity, client_tags, Peer::default())
    }

    /// Admits a connection, or says why not. Limits are checked under the
    /// same lock as the insert, so concurrent connects cannot overshoot.
    pub fn register_from(
        self: &Arc<Self>,
        identity: &Identity,
        client_tags: Vec<Tag>,
        peer: Peer,
    ) -> Result<Registration, RegisterError> {
        let id = ClientId::random();
        let link = Arc::new(ClientLink::new(self.config.queue_len, peer.socket));
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
            addr: peer.addr,
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
            let of_addr = peer
                .addr
                .and_then(|addr| indexes.by_addr.get(&addr).copied())
                .unwrap_or(0);
            if of_addr >= self.config.per_address_max {
                return Err(RegisterError::TooManyForAddress {
                    max: self.config.per_address_max,
                });
            }
            indexes.insert(id, entry);
        }
        self.counters
            .connections_opened
            .fetch_add(1, Ordering::Relaxed);
        Ok(Registration {
            id,
            guard: ClientGuard::new(self.clone(), id, identity.user.clone(), link),
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
            match entry.link.queue.push(frame.clone()) {
                Ok(()) => delivered += 1,
                Err(Full) => overflowed.push(client),
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
                entry.link.close(reason);
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

    /// Forgets a client whose connection ended (its guard calls this).
    fn unregister(&self, client: ClientId) {
        self.write().remove(client);
        self.counters
            .connections_closed
            .fetch_add(1, Ordering::Relaxed);
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

#[cfg(test)]
mod tests;
