//! The Redis bus: one stream every process appends to, each reading what
//! its own clients need of it.
//!
//! Three tasks per process (three or four connections per process, plus
//! at most four short-lived ones reading entries older than the history
//! for resuming clients: the bound on what the bus holds open): the
//! [`publish`]er appends queued sends with a script that also keeps the
//! stream's epoch and publishes each entry on its channel, pipelining
//! whatever is waiting into one round trip; the reader, either
//! [`subscribe`] (`bus.follow = own`: the wide channel and the channels of
//! this process's users, one subscription connection and one for
//! commands) or [`read`] (`all`: the whole stream with a blocking
//! `XREAD`), delivers through the registry, both through [`apply`]; the
//! [`cluster`] task writes this process's figures and reads the others'.
//! Each reconnects by itself with backoff, and every command is bounded by
//! `bus.timeout`.

mod apply;
mod cluster;
mod followed;
mod older;
mod publish;
mod read;
mod reply;
mod seen;
mod subscribe;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio::sync::{mpsc, watch};

use super::wire::Outgoing;
use super::{BusConfig, BusError, BusStatus, Follow};
use crate::event::{Event, EventError};
use crate::event_id::EventId;
use crate::event_id::InboxStamp;
use crate::registry::{Registry, Stats};
use crate::target::{Target, UserId};

pub use cluster::NodeReport;

/// The names of the keys, all under one hash tag (`{prefix}`), so that
/// the append script's two keys live on one node of a Redis Cluster too.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    stream: String,
    epoch: String,
    nodes: String,
    node_prefix: String,
    /// The channel every process subscribes to (own-clients read).
    wide: String,
    /// Followed by a user id: that user's channel.
    user_prefix: String,
    /// The highest inbox position published so far.
    inbox_seq: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        let tag = format!("{{{prefix}}}");
        Keys {
            stream: format!("{tag}:stream"),
            epoch: format!("{tag}:epoch"),
            nodes: format!("{tag}:nodes"),
            node_prefix: format!("{tag}:node:"),
            wide: format!("{tag}:w"),
            user_prefix: format!("{tag}:u:"),
            inbox_seq: format!("{tag}:inbox_seq"),
        }
    }

    /// The channel an item is published on (the wide one not copied).
    fn channel(&self, route: super::wire::Route<'_>) -> std::borrow::Cow<'_, str> {
        match route {
            super::wire::Route::Wide => std::borrow::Cow::Borrowed(&self.wide),
            super::wire::Route::User(user) => std::borrow::Cow::Owned(self.user_channel(user)),
        }
    }

    fn user_channel(&self, user: &UserId) -> String {
        format!("{}{}", self.user_prefix, user.as_str())
    }
}

/// What the tasks share with the handle.
pub(super) struct BusState {
    registry: Arc<Registry>,
    client: redis::Client,
    keys: Keys,
    config: BusConfig,
    instance: String,
    publisher_up: AtomicBool,
    reader_up: AtomicBool,
    /// The other processes' latest reports.
    others: Mutex<Vec<NodeReport>>,
    /// Reads of older entries at once, at most (each on a connection of
    /// its own, so that they do not queue behind the publisher).
    older_reads: tokio::sync::Semaphore,
    /// Look-ups of the stream's newest id at once, at most (apart from
    /// older reads, which may take longer).
    newest_reads: tokio::sync::Semaphore,
    /// This process's publisher (see `wire::Origin`).
    publisher: u64,
    /// The entries the reader has read, by origin: copies are dropped,
    /// and the publisher does not deliver again, locally, a send whose
    /// append it could not confirm but the reader has read.
    read: Mutex<seen::Seen>,
    /// Set once the reader has followed the stream once.
    reader_read: watch::Sender<bool>,
    /// The reader's position, updated after each read: what a request
    /// waiting for this process to catch up waits on.
    read_head: watch::Sender<Option<EventId>>,
    /// When the reader last logged skipped entries, and how many it has
    /// skipped since.
    skip_log: Mutex<(Option<Instant>, u64)>,
    started: Instant,
    stopping: watch::Sender<bool>,
    /// The users this process follows (own-clients read).
    followed: Mutex<followed::Followed>,
}

impl BusState {
    /// A connection with `bus.timeout` on connecting and (unless it is the
    /// reader's, whose commands block longer on purpose) on every reply.
    async fn connect(&self, replies_timeout: bool) -> redis::RedisResult<MultiplexedConnection> {
        let timeout = self.config.timeout;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(replies_timeout.then_some(timeout));
        tokio::time::timeout(
            timeout,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| timed_out())?
    }

    /// Whether an entry from `origin` was read before (and remembers it).
    fn is_copy(&self, origin: Option<super::wire::Origin>) -> bool {
        self.read
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_copy(origin)
    }

    /// Whether the reader has read the entry this process appended as
    /// `origin`.
    fn has_read(&self, origin: super::wire::Origin) -> bool {
        self.read
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .has_read(origin)
    }

    fn reconnected(&self, link: crate::metrics::BusLink) {
        if let Some(metrics) = self.registry.metrics() {
            metrics.bus_reconnected(link);
        }
    }

    /// Resolves when the bus is told to stop.
    async fn stopped(&self) {
        let mut stopping = self.stopping.subscribe();
        let _ = stopping.wait_for(|stop| *stop).await;
    }
}

fn timed_out() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "no answer from Redis within bus.timeout",
    ))
}

/// Concurrent reads of entries older than the history, at most.
const OLDER_READS: usize = 4;

/// Concurrent look-ups of the stream's newest id, at most.
const NEWEST_READS: usize = 16;

/// The Redis bus's handle.
pub(super) struct RedisBus {
    state: Arc<BusState>,
    outgoing: mpsc::Sender<Outgoing>,
    /// To the own-clients read's task (unused with the whole-stream read).
    follow_requests: mpsc::UnboundedSender<subscribe::Request>,
}

/// Keeps this process following a user while a stream of the user is
/// open here (own-clients read); nothing with the whole-stream read.
pub struct Following(#[allow(dead_code)] Option<Arc<()>>); // held, never read

impl Following {
    pub(crate) fn none() -> Self {
        Following(None)
    }
}

impl RedisBus {
    pub(super) fn config(&self) -> &BusConfig {
        &self.state.config
    }

    pub(super) fn start(
        registry: Arc<Registry>,
        config: &BusConfig,
    ) -> Result<Arc<Self>, BusError> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| BusError(format!("{:?} is not a Redis URL: {e}", config.url)))?;
        let instance = if config.instance.is_empty() {
            format!("{:08x}", rand::random::<u32>())
        } else {
            config.instance.clone()
        };
        let (outgoing, queued) = mpsc::channel(config.queue_max.max(1));
        let state = Arc::new(BusState {
            registry,
            client,
            keys: Keys::new(&config.prefix),
            config: config.clone(),
            instance,
            publisher_up: AtomicBool::new(false),
            reader_up: AtomicBool::new(false),
            others: Mutex::new(Vec::new()),
            reader_read: watch::Sender::new(false),
            read_head: watch::Sender::new(None),
            skip_log: Mutex::new((None, 0)),
            publisher: rand::random(),
            read: Mutex::new(seen::Seen::default()),
            older_reads: tokio::sync::Semaphore::new(OLDER_READS),
            newest_reads: tokio::sync::Semaphore::new(NEWEST_READS),
            started: Instant::now(),
            stopping: watch::Sender::new(false),
            followed: Mutex::new(followed::Followed::default()),
        });
        tracing::info!(instance = %state.instance, prefix = %config.prefix, "bus: Redis; connecting");
        tokio::spawn(publish::run(state.clone(), queued));
        let (follow_requests, requests) = mpsc::unbounded_channel();
        match config.follow {
            Follow::Own => drop(tokio::spawn(subscribe::run(state.clone(), requests))),
            Follow::All => drop(tokio::spawn(read::run(state.clone()))),
        }
        tokio::spawn(cluster::run(state.clone()));
        Ok(Arc::new(RedisBus {
            state,
            outgoing,
            follow_requests,
        }))
    }

    pub(super) fn publish(
        &self,
        target: &Target,
        event: &Event,
        inbox: Option<InboxStamp>,
    ) -> Result<(), EventError> {
        self.outgoing
            .try_send(Outgoing::Event {
                target: target.clone(),
                event: event.clone(),
                inbox,
            })
            .map_err(|_| EventError::BusBusy {
                max: self.state.config.queue_max,
            })
    }

    pub(super) fn queue_depth(&self) -> usize {
        self.outgoing.max_capacity() - self.outgoing.capacity()
    }

    pub(super) fn timeout(&self) -> Duration {
        self.state.config.timeout
    }

    pub(super) async fn publish_waiting(
        &self,
        target: &Target,
        event: &Event,
        inbox: Option<InboxStamp>,
        deadline: tokio::time::Instant,
    ) -> Result<(), EventError> {
        let item = Outgoing::Event {
            target: target.clone(),
            event: event.clone(),
            inbox,
        };
        let busy = EventError::BusBusy {
            max: self.state.config.queue_max,
        };
        match tokio::time::timeout_at(deadline, self.outgoing.send(item)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(busy),
        }
    }

    /// Queues a kick for every process; with the queue full, a task waits
    /// for room (at most `bus.timeout`): a sign-out must reach the other
    /// processes' streams.
    pub(super) fn kick(&self, target: &Target) {
        let kick = Outgoing::Kick {
            target: target.clone(),
        };
        if let Err(mpsc::error::TrySendError::Full(kick)) = self.outgoing.try_send(kick) {
            let (outgoing, timeout) = (self.outgoing.clone(), self.state.config.timeout);
            tokio::spawn(async move {
                if tokio::time::timeout(timeout, outgoing.send(kick))
                    .await
                    .is_err()
                {
                    tracing::warn!("bus: a kick could not be queued for the other processes");
                }
            });
        }
    }

    pub(super) fn connected(&self) -> bool {
        self.state.publisher_up.load(Ordering::Relaxed)
            && self.state.reader_up.load(Ordering::Relaxed)
    }

    pub(super) fn status(&self) -> BusStatus {
        BusStatus {
            kind: "redis",
            connected: self.connected(),
            instance: self.state.instance.clone(),
        }
    }

    pub(super) fn cluster_stats(&self, local: Stats) -> Stats {
        let others = self
            .state
            .others
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        cluster::merge(&self.state.instance, local, &others)
    }

    pub(super) async fn catch_up(&self, id: Option<EventId>) {
        let timeout = self.state.config.timeout;
        let mut read = self.state.reader_read.subscribe();
        if self.state.started.elapsed() < timeout {
            let _ = tokio::time::timeout(timeout, read.wait_for(|read| *read)).await;
        }
        let Some(id) = id else {
            return;
        };
        let behind = || {
            let (head, state) = self.state.registry.history_head();
            let following = self.state.reader_up.load(Ordering::Relaxed);
            following && state && head.epoch == id.epoch && head.position < id.position
        };
        if !behind() {
            return;
        }
        // Ahead of what this process read: appended moments ago through
        // another process, or never (a made-up id). Only the first is
        // worth a wait.
        match older::newest(&self.state).await {
            Some(newest) if id.position <= newest => {}
            _ => return,
        }
        let mut heads = self.state.read_head.subscribe();
        if tokio::time::timeout(timeout, heads.wait_for(|_| !behind()))
            .await
            .is_err()
        {
            tracing::debug!(%id, "the stream was not read up to a client's id in time");
        }
    }

    /// Before a stream of `user` is registered: with the own-clients
    /// read, follows the user (the first stream of a user here waits for
    /// its channel and the barrier: see [`crate::Bus::follow`]), and
    /// brings this process up to a client's id that is ahead of it; with
    /// the whole-stream read, [`RedisBus::catch_up`].
    pub(super) async fn follow(&self, user: &UserId, id: Option<EventId>) -> Following {
        if self.state.config.follow == Follow::All {
            self.catch_up(id).await;
            return Following(None);
        }
        let timeout = self.state.config.timeout;
        let mut read = self.state.reader_read.subscribe();
        if self.state.started.elapsed() < timeout {
            let _ = tokio::time::timeout(timeout, read.wait_for(|read| *read)).await;
        }
        let ahead = id.is_some_and(|id| {
            let (head, following) = self.state.registry.history_head();
            following && head.epoch == id.epoch && head.position < id.position
        });
        let answered = {
            let mut followed = self
                .state
                .followed
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let followed::Held {
                held,
                known,
                accepting,
            } = followed.hold(user);
            if (known && !ahead) || !accepting {
                // Nothing to wait for; or no connection to ask: the next
                // one follows the user before it reads what was missed.
                return Following(Some(held));
            }
            let (done, answered) = tokio::sync::oneshot::channel();
            let request = subscribe::Request {
                user: (!known).then(|| user.clone()),
                done,
            };
            // Sent under the lock: the connection that accepts it cannot
            // end in between without letting it go.
            if self.follow_requests.send(request).is_err() {
                return Following(Some(held));
            }
            (held, answered)
        };
        let (held, answered) = answered;
        // Answered after the barrier, or let go when the connection fails
        // (every step of it is bounded by `bus.timeout`).
        let _ = answered.await;
        Following(Some(held))
    }

    /// From where this process's history holds every event `user` needs:
    /// the history's own floor, or (own-clients read) the later position
    /// from which it has followed the user.
    pub(super) fn floor_for(&self, user: &UserId, floor: EventId) -> EventId {
        if self.state.config.follow == Follow::All {
            return floor;
        }
        let followed = self
            .state
            .followed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .floor(user);
        let user_floor = match followed {
            Some(Some(at)) if at.epoch == floor.epoch => at,
            Some(Some(_)) => return floor,
            // Not followed, or not yet: nothing of the user is known to
            // be here before the history's newest position.
            Some(None) | None => self.state.registry.history_head().0,
        };
        if user_floor.epoch == floor.epoch && user_floor.position > floor.position {
            user_floor
        } else {
            floor
        }
    }

    /// Users followed now (own-clients read).
    pub(super) fn followed_users(&self) -> usize {
        self.state
            .followed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub(super) async fn older(
        &self,
        after: EventId,
        upto: crate::event_id::Position,
        recipient: &crate::target::Recipient<'_>,
        since: Option<u64>,
    ) -> Option<bytes::Bytes> {
        older::read(&self.state, after, upto, recipient, since).await
    }

    pub(super) fn stop(&self) {
        self.state.stopping.send_replace(true);
    }
}
