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
//!
//! With `bus.partitions` above one ([`crate::partition`]), each partition
//! is such a stream on one of the shards `bus.url` lists, with its own
//! publisher and reader (a [`Part`]); the reader of a partition that no
//! stream here stands in holds no connection (dormant). At most four older
//! reads run at once per shard. The cluster task runs once, on the shard
//! that keeps the shared state, and also exchanges the sessions ended
//! anywhere ([`ended`]) and checks that every process has the same layout
//! ([`layout`]).

mod apply;
mod cluster;
mod ended;
mod followed;
mod layout;
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
use crate::partition::{Partitions, Route};
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
    /// Sessions ended (partitioned bus; see [`ended`]).
    ended: String,
    /// Each process's partitions and shards, to find processes set up
    /// otherwise (partitioned bus).
    layout: String,
}

impl Keys {
    /// One partition's keys: under `{prefix}` with one partition (the keys
    /// of a bus before partitions), else under `{prefix:N}`, so that each
    /// partition is one hash tag (one node of a Redis Cluster).
    fn new(prefix: &str, partition: usize, partitions: Partitions) -> Self {
        let tag = if partitions.count() == 1 {
            format!("{{{prefix}}}")
        } else {
            format!("{{{prefix}:{partition}}}")
        };
        Keys {
            stream: format!("{tag}:stream"),
            epoch: format!("{tag}:epoch"),
            nodes: format!("{tag}:nodes"),
            node_prefix: format!("{tag}:node:"),
            wide: format!("{tag}:w"),
            user_prefix: format!("{tag}:u:"),
            inbox_seq: format!("{tag}:inbox_seq"),
            ended: format!("{tag}:ended"),
            layout: format!("{tag}:layout"),
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
    /// The partition this state's tasks carry (see [`crate::partition`]).
    partition: usize,
    /// Its shard's URL.
    url: String,
    /// The shared state's client (`BusConfig::primary_url`): where the
    /// cluster's figures and ended sessions live, whatever the partition's
    /// shard.
    shared: redis::Client,
    client: redis::Client,
    keys: Keys,
    config: BusConfig,
    instance: String,
    publisher_up: AtomicBool,
    reader_up: AtomicBool,
    /// A partition this process follows no stream of (no subscription).
    dormant: AtomicBool,
    /// The cluster task's last exchange succeeded (figures, and with
    /// partitions the sessions ended elsewhere).
    cluster_up: AtomicBool,
    /// The other processes' latest reports.
    others: Mutex<Vec<NodeReport>>,
    /// Reads of older entries at once, at most (each on a connection of
    /// its own, so that they do not queue behind the publisher); shared by
    /// the partitions of one shard.
    older_reads: Arc<tokio::sync::Semaphore>,
    /// Look-ups of the stream's newest id at once, at most (apart from
    /// older reads, which may take longer); shared by the partitions of
    /// one shard.
    newest_reads: Arc<tokio::sync::Semaphore>,
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
    /// Sessions ended, to tell every process (the first partition's, with
    /// several).
    ended: Mutex<ended::Ended>,
}

impl BusState {
    /// A connection with `bus.timeout` on connecting and (unless it is the
    /// reader's, whose commands block longer on purpose) on every reply.
    async fn connect(&self, replies_timeout: bool) -> redis::RedisResult<MultiplexedConnection> {
        self.connect_to(&self.client, replies_timeout).await
    }

    /// [`BusState::connect`] to the shared state's shard.
    async fn connect_shared(&self) -> redis::RedisResult<MultiplexedConnection> {
        self.connect_to(&self.shared, true).await
    }

    async fn connect_to(
        &self,
        client: &redis::Client,
        replies_timeout: bool,
    ) -> redis::RedisResult<MultiplexedConnection> {
        let timeout = self.config.timeout;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(replies_timeout.then_some(timeout));
        tokio::time::timeout(
            timeout,
            client.get_multiplexed_async_connection_with_config(&config),
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

/// The Redis bus's handle: one [`Part`] per partition.
pub(super) struct RedisBus {
    parts: Box<[Part]>,
    partitions: Partitions,
}

/// One partition's tasks, as the handle reaches them.
struct Part {
    state: Arc<BusState>,
    outgoing: mpsc::Sender<Outgoing>,
    /// To the own-clients read's task (unused with the whole-stream read).
    follow_requests: mpsc::UnboundedSender<subscribe::Request>,
}

/// Queues the event in each partition whose room was reserved (so that a
/// wide event reaches all of them or, refused before this, none).
fn send_all(
    permits: Vec<mpsc::Permit<'_, Outgoing>>,
    target: &Target,
    event: &Event,
    inbox: Option<InboxStamp>,
) {
    for permit in permits {
        permit.send(Outgoing::Event {
            target: target.clone(),
            event: event.clone(),
            inbox,
        });
    }
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
        &self.parts[0].state.config
    }

    /// The part of a partition (the last for a larger index: every caller
    /// takes it from `Partitions`, so that never happens).
    fn part(&self, partition: usize) -> &Part {
        &self.parts[partition.min(self.parts.len() - 1)]
    }

    fn part_of(&self, user: &UserId) -> &Part {
        self.part(self.partitions.of(user))
    }

    /// The parts an item for `target` goes to.
    fn parts_for(&self, target: &Target) -> &[Part] {
        match self.partitions.route(target) {
            Route::One(partition) => std::slice::from_ref(self.part(partition)),
            Route::Every => &self.parts,
        }
    }

    pub(super) fn start(
        registry: Arc<Registry>,
        config: &BusConfig,
    ) -> Result<Arc<Self>, BusError> {
        let urls = config.urls();
        let partitions = config.partitions;
        if urls.len() > partitions.count() {
            return Err(BusError(format!(
                "{} shards but bus.partitions is {}: each shard needs a partition at least",
                urls.len(),
                partitions.count()
            )));
        }
        if partitions.count() > 1 && config.follow == Follow::All {
            return Err(BusError(
                "bus.follow = all reads one stream; with bus.partitions above 1 use own".into(),
            ));
        }
        let mut clients = Vec::with_capacity(urls.len());
        for url in &urls {
            let client = redis::Client::open(*url).map_err(|e| {
                let shard = crate::partition::shard_address(url);
                BusError(format!("{shard:?} is not a Redis URL: {e}"))
            })?;
            let bounds = (
                Arc::new(tokio::sync::Semaphore::new(OLDER_READS)),
                Arc::new(tokio::sync::Semaphore::new(NEWEST_READS)),
            );
            clients.push((*url, client, bounds));
        }
        let instance = if config.instance.is_empty() {
            format!("{:08x}", rand::random::<u32>())
        } else {
            config.instance.clone()
        };
        for (url, ..) in &clients {
            let held = (0..partitions.count())
                .filter(|p| crate::partition::shard_of(&urls, *p) == *url)
                .count();
            if held == 0 {
                let shard = crate::partition::shard_address(url);
                tracing::warn!(%shard, partitions = partitions.count(), "bus: this shard holds no partition (raise bus.partitions)");
            }
        }
        let primary = config.primary_url();
        let shared = clients
            .iter()
            .find(|(url, ..)| *url == primary)
            .map(|(_, client, _)| client.clone())
            .ok_or_else(|| BusError("no Redis URL".into()))?;
        let mut parts = Vec::with_capacity(partitions.count());
        for partition in 0..partitions.count() {
            let url = crate::partition::shard_of(&urls, partition);
            // Bounds per shard: a shard that hangs holds up its own reads.
            let (client, (older_reads, newest_reads)) = clients
                .iter()
                .find(|(candidate, ..)| *candidate == url)
                .map(|(_, client, bounds)| (client.clone(), bounds.clone()))
                .ok_or_else(|| BusError("no Redis URL".into()))?;
            let (outgoing, queued) = mpsc::channel(config.queue_max.max(1));
            let state = Arc::new(BusState {
                registry: registry.clone(),
                partition,
                url: url.to_owned(),
                shared: shared.clone(),
                client,
                keys: Keys::new(&config.prefix, partition, partitions),
                config: config.clone(),
                instance: instance.clone(),
                publisher_up: AtomicBool::new(false),
                reader_up: AtomicBool::new(false),
                dormant: AtomicBool::new(false),
                cluster_up: AtomicBool::new(false),
                others: Mutex::new(Vec::new()),
                reader_read: watch::Sender::new(false),
                read_head: watch::Sender::new(None),
                skip_log: Mutex::new((None, 0)),
                publisher: rand::random(),
                read: Mutex::new(seen::Seen::default()),
                older_reads,
                newest_reads,
                started: Instant::now(),
                stopping: watch::Sender::new(false),
                followed: Mutex::new(followed::Followed::default()),
                ended: Mutex::new(ended::Ended::since_now()),
            });
            tokio::spawn(publish::run(state.clone(), queued));
            let (follow_requests, requests) = mpsc::unbounded_channel();
            match config.follow {
                Follow::Own => drop(tokio::spawn(subscribe::run(state.clone(), requests))),
                Follow::All => drop(tokio::spawn(read::run(state.clone()))),
            }
            if partition == 0 {
                // The figures (and ended sessions) travel through the
                // shared state's shard, with the first partition's key
                // names.
                tokio::spawn(cluster::run(state.clone()));
            }
            parts.push(Part {
                state,
                outgoing,
                follow_requests,
            });
        }
        tracing::info!(%instance, prefix = %config.prefix, partitions = partitions.count(), shards = urls.len(), "bus: Redis; connecting");
        Ok(Arc::new(RedisBus {
            parts: parts.into_boxed_slice(),
            partitions,
        }))
    }

    pub(super) fn publish(
        &self,
        target: &Target,
        event: &Event,
        inbox: Option<InboxStamp>,
    ) -> Result<(), EventError> {
        let busy = || EventError::BusBusy {
            max: self.config().queue_max,
        };
        let parts = self.parts_for(target);
        // Room in every queue first: a wide event reaches every partition
        // or none.
        let mut permits = Vec::with_capacity(parts.len());
        for part in parts {
            permits.push(part.outgoing.try_reserve().map_err(|_| busy())?);
        }
        send_all(permits, target, event, inbox);
        Ok(())
    }

    pub(super) fn queue_depth(&self) -> usize {
        self.parts
            .iter()
            .map(|part| part.outgoing.max_capacity() - part.outgoing.capacity())
            .sum()
    }

    pub(super) fn timeout(&self) -> Duration {
        self.config().timeout
    }

    pub(super) async fn publish_waiting(
        &self,
        target: &Target,
        event: &Event,
        inbox: Option<InboxStamp>,
        deadline: tokio::time::Instant,
    ) -> Result<(), EventError> {
        let busy = EventError::BusBusy {
            max: self.config().queue_max,
        };
        let parts = self.parts_for(target);
        let mut permits = Vec::with_capacity(parts.len());
        for part in parts {
            match tokio::time::timeout_at(deadline, part.outgoing.reserve()).await {
                Ok(Ok(permit)) => permits.push(permit),
                _ => return Err(busy),
            }
        }
        send_all(permits, target, event, inbox);
        Ok(())
    }

    /// Queues a kick for every process; with the queue full, a task waits
    /// for room (at most `bus.timeout`): a sign-out must reach the other
    /// processes' streams.
    pub(super) fn kick(&self, target: &Target) {
        if self.partitions.count() > 1
            && target.tags().is_empty()
            && let crate::target::Scope::Session(session) = target.scope()
        {
            // Every process, whichever partitions it reads (see `ended`).
            self.parts[0]
                .state
                .ended
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(session.clone());
        }
        for part in self.parts_for(target) {
            let kick = Outgoing::Kick {
                target: target.clone(),
            };
            if let Err(mpsc::error::TrySendError::Full(kick)) = part.outgoing.try_send(kick) {
                let (outgoing, timeout) = (part.outgoing.clone(), part.state.config.timeout);
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
    }

    /// Every partition this process follows has its publisher and its
    /// reader connected; with partitions, also the exchange of ended
    /// sessions (how sign-outs in partitions it does not follow reach it).
    /// A partition it does not follow does not count: a shard lost
    /// degrades the processes that follow its partitions, not every one.
    pub(super) fn connected(&self) -> bool {
        let parts = self.parts.iter().all(|part| {
            let state = &part.state;
            state.reader_up.load(Ordering::Relaxed)
                && (state.publisher_up.load(Ordering::Relaxed)
                    || state.dormant.load(Ordering::Relaxed))
        });
        parts
            && (self.partitions.count() == 1
                || self.parts[0].state.cluster_up.load(Ordering::Relaxed))
    }

    pub(super) fn status(&self) -> BusStatus {
        BusStatus {
            kind: "redis",
            connected: self.connected(),
            instance: self.parts[0].state.instance.clone(),
        }
    }

    pub(super) fn cluster_stats(&self, local: Stats) -> Stats {
        let state = &self.parts[0].state;
        let others = state
            .others
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        cluster::merge(&state.instance, local, &others, self.partitions.count() > 1)
    }

    /// The whole-stream read's wait for a client's id (one partition:
    /// `bus.follow = all` refuses more).
    pub(super) async fn catch_up(&self, id: Option<EventId>) {
        let state = &self.parts[0].state;
        let timeout = state.config.timeout;
        let mut read = state.reader_read.subscribe();
        if state.started.elapsed() < timeout {
            let _ = tokio::time::timeout(timeout, read.wait_for(|read| *read)).await;
        }
        let Some(id) = id else {
            return;
        };
        let behind = || {
            let (head, following) = state.registry.history_head(state.partition);
            let up = state.reader_up.load(Ordering::Relaxed);
            up && following && head.epoch == id.epoch && head.position < id.position
        };
        if !behind() {
            return;
        }
        // Ahead of what this process read: appended moments ago through
        // another process, or never (a made-up id). Only the first is
        // worth a wait.
        match older::newest(state).await {
            Some(newest) if id.position <= newest => {}
            _ => return,
        }
        let mut heads = state.read_head.subscribe();
        if tokio::time::timeout(timeout, heads.wait_for(|_| !behind()))
            .await
            .is_err()
        {
            tracing::debug!(%id, "the stream was not read up to a client's id in time");
        }
    }

    /// Before a stream of `user` is registered: with the own-clients
    /// read, follows the user in the user's partition (the first stream
    /// of a user here waits for its channel and the barrier: see
    /// [`crate::Bus::follow`]), and brings this process up to a client's
    /// id that is ahead of it; with the whole-stream read,
    /// [`RedisBus::catch_up`].
    pub(super) async fn follow(&self, user: &UserId, id: Option<EventId>) -> Following {
        if self.config().follow == Follow::All {
            self.catch_up(id).await;
            return Following(None);
        }
        let part = self.part_of(user);
        let state = &part.state;
        let timeout = state.config.timeout;
        let mut read = state.reader_read.subscribe();
        if state.started.elapsed() < timeout {
            let _ = tokio::time::timeout(timeout, read.wait_for(|read| *read)).await;
        }
        let ahead = id.is_some_and(|id| {
            let (head, following) = state.registry.history_head(state.partition);
            following && head.epoch == id.epoch && head.position < id.position
        });
        let answered = {
            let mut followed = state
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
            if part.follow_requests.send(request).is_err() {
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

    /// From where this process's history of `user`'s partition holds
    /// every event `user` needs: the history's own floor, or
    /// (own-clients read) the later position from which it has followed
    /// the user.
    pub(super) fn floor_for(&self, user: &UserId, floor: EventId) -> EventId {
        if self.config().follow == Follow::All {
            return floor;
        }
        let state = &self.part_of(user).state;
        let followed = state
            .followed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .floor(user);
        let user_floor = match followed {
            Some(Some(at)) if at.epoch == floor.epoch => at,
            Some(Some(_)) => return floor,
            // Not followed, or not yet: nothing of the user is known to
            // be here before the history's newest position.
            Some(None) | None => state.registry.history_head(state.partition).0,
        };
        if user_floor.epoch == floor.epoch && user_floor.position > floor.position {
            user_floor
        } else {
            floor
        }
    }

    /// Users followed now (own-clients read), over every partition.
    pub(super) fn followed_users(&self) -> usize {
        self.parts
            .iter()
            .map(|part| {
                part.state
                    .followed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .len()
            })
            .sum()
    }

    pub(super) async fn older(
        &self,
        after: EventId,
        upto: crate::event_id::Position,
        recipient: &crate::target::Recipient<'_>,
        since: Option<u64>,
    ) -> Option<bytes::Bytes> {
        let state = &self.part_of(recipient.user).state;
        older::read(state, after, upto, recipient, since).await
    }

    pub(super) fn stop(&self) {
        for part in self.parts.iter() {
            part.state.stopping.send_replace(true);
        }
    }
}
