//! The bus: how a send reaches the clients of every server process.
//!
//! **In-process** (the default, nothing to start): a send goes straight to
//! this process's [`Registry`]. **Redis** (`bus.url`): a send is appended
//! to one Redis Stream; each process reads what its own clients need of
//! it ([`Follow`]) and delivers it through its registry, exactly as a
//! local send. The stream's entry ids are the events' positions, so ids
//! are ordered across the cluster and a browser resumes (`Last-Event-ID`)
//! on whichever process it reaches; the stream's identity is the epoch
//! (see [`crate::event_id`]). Sign-out kicks travel the same way.
//!
//! A send never waits for Redis: it is queued for the bus's publisher
//! (bounded, `bus.queue_max`), which keeps the order of sends. When Redis
//! cannot be reached, sends still reach this process's clients, on a
//! history of its own; clients that may have missed events from other
//! processes are told with `sse-reset` (never a silent gap).

#[cfg(feature = "redis")]
mod backoff;
#[cfg(not(feature = "redis"))]
mod no_redis;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
mod wire;

#[cfg(not(feature = "redis"))]
use no_redis as redis;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::event::{Event, EventError};
use super::event_id::EventId;
use super::event_id::InboxStamp;
use super::metrics::Refusal;
use super::partition::Partitions;
use super::registry::{DisconnectReason, Registry, Stats};
use super::target::{Recipient, Target, UserId};

pub use redis::Following;
#[cfg(feature = "redis")]
pub use redis::NodeReport;

/// Where the bus is and how it behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusConfig {
    /// `redis://host:port[/db]`; empty: in-process. Several, separated by
    /// commas: the shards the partitions are spread over (each partition
    /// on one, by rendezvous hashing, so adding a shard moves only the
    /// partitions it takes). The first also holds what the cluster shares
    /// beside the streams (figures, presence, idempotency keys, limits).
    pub url: String,
    /// Streams the bus's events are spread over (`bus.partitions`): a
    /// user's events live in one, wide events in every one. The same on
    /// every process. See [`crate::partition`].
    pub partitions: Partitions,
    /// Prefix of every key the bus writes (`{prefix}:stream`, …), so that
    /// several apps (or tests) can share one Redis.
    pub prefix: String,
    /// Every Redis command's bound; a slower Redis counts as unreachable.
    pub timeout: Duration,
    /// Sends waiting for the publisher, at most; one more is refused.
    pub queue_max: usize,
    /// How often each process writes its figures to Redis; a process that
    /// stops reporting drops out of the totals after three intervals.
    pub report_interval: Duration,
    /// This process's name in the cluster's figures; empty: a random one.
    pub instance: String,
    /// Stream entries kept in Redis (`XADD MAXLEN ~`), and the most this
    /// process mirrors for replay.
    pub history_len: usize,
    /// What each process reads of the stream.
    pub follow: Follow,
    /// With [`Follow::Own`]: how long a process keeps following a user
    /// after the user's last stream here ended (a reconnect within it
    /// costs no new subscription).
    pub unfollow_after: Duration,
}

/// What each process reads of the shared stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Follow {
    /// Only what its own clients need: events for the users it holds a
    /// stream of (one Redis channel per user, subscribed while it does),
    /// and everything addressed wider (everyone, tags, sessions, clients,
    /// kicks). Adding processes then adds no reading to each.
    #[default]
    Own,
    /// Every entry (`XREAD`): each process reads all events, whoever they
    /// are for; and it writes entries in the form versions before the
    /// own-clients read can read (the step between them in a rolling
    /// upgrade). Also the baseline the benchmarks compare with.
    All,
}

impl Follow {
    pub fn as_str(self) -> &'static str {
        match self {
            Follow::Own => "own",
            Follow::All => "all",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "own" => Some(Follow::Own),
            "all" => Some(Follow::All),
            _ => None,
        }
    }
}

impl BusConfig {
    /// The Redis URLs `url` lists (none: in-process): split at commas
    /// that start another URL (`…,redis://…`), so that a comma inside one
    /// (a password) stays in it.
    pub fn urls(&self) -> Vec<&str> {
        let mut urls: Vec<&str> = Vec::new();
        let mut start = 0;
        for (at, _) in self.url.match_indices(',') {
            let next = self.url[at + 1..].trim_start();
            if next.is_empty() || next.starts_with("redis") || next.starts_with("unix:") {
                urls.push(&self.url[start..at]);
                start = at + 1;
            }
        }
        urls.push(&self.url[start..]);
        urls.into_iter()
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .collect()
    }

    /// Where the cluster's shared state lives (figures, presence, ended
    /// sessions, idempotency keys, limits): with several shards, the one
    /// whose address sorts first, so that every process finds the same
    /// whatever order its `url` lists them in.
    pub fn primary_url(&self) -> &str {
        self.urls()
            .into_iter()
            .min_by_key(|url| crate::partition::shard_address(url))
            .unwrap_or("")
    }
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            url: String::new(),
            partitions: Partitions::ONE,
            prefix: "sse".into(),
            timeout: Duration::from_secs(2),
            queue_max: 10_000,
            report_interval: Duration::from_secs(1),
            instance: String::new(),
            history_len: 10_000,
            follow: Follow::Own,
            unfollow_after: Duration::from_secs(30),
        }
    }
}

/// Why the bus could not be set up (a bad URL; an unreachable Redis is
/// not an error: the bus connects by itself when it can).
#[derive(Debug, thiserror::Error)]
#[error("bus.url: {0}")]
pub struct BusError(String);

/// The bus as figures show it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BusStatus {
    /// `local` or `redis`.
    pub kind: &'static str,
    /// Always true in-process; with Redis, whether both the publisher and
    /// the reader are connected now.
    pub connected: bool,
    pub instance: String,
}

/// The handle sends go through. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    registry: Arc<Registry>,
    redis: Option<Arc<redis::RedisBus>>,
}

impl Bus {
    /// In-process: sends go straight to `registry`.
    pub fn local(registry: Arc<Registry>) -> Self {
        Bus {
            registry,
            redis: None,
        }
    }

    /// In-process when `config.url` is empty, else Redis: starts the
    /// publisher, the reader and the reports on the current runtime and
    /// returns at once (they connect, and reconnect, by themselves).
    pub fn start(registry: Arc<Registry>, config: &BusConfig) -> Result<Self, BusError> {
        if config.urls().is_empty() {
            return Ok(Bus::local(registry));
        }
        if registry.partitions() != config.partitions {
            return Err(BusError(format!(
                "the registry has {} partitions and bus.partitions is {}: build it with Registry::with_partitions",
                registry.partitions().count(),
                config.partitions.count()
            )));
        }
        let redis = redis::RedisBus::start(registry.clone(), config)?;
        Ok(Bus {
            registry,
            redis: Some(redis),
        })
    }

    /// A registry for this bus: one history per partition with a
    /// partitioned Redis bus, one otherwise.
    pub fn registry_for(config: crate::SseConfig, bus: &BusConfig) -> Registry {
        let partitions = if bus.urls().is_empty() {
            Partitions::ONE
        } else {
            bus.partitions
        };
        Registry::with_partitions(config, partitions)
    }

    /// Whether sends go through Redis (shared with other processes).
    pub fn through_redis(&self) -> bool {
        self.redis.is_some()
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The Redis bus's settings, when sends go through Redis (for state
    /// other parts keep beside the bus's, such as idempotency keys).
    #[cfg(feature = "redis")]
    pub(crate) fn redis_config(&self) -> Option<&BusConfig> {
        self.redis.as_ref().map(|redis| redis.config())
    }

    /// Sends `event` (stored in the inbox as `inbox`, if given) to the
    /// clients `target` selects, in every process. Returns how many of
    /// this process's connections it is for; with Redis, they receive it
    /// once it has gone through the stream (a millisecond or so).
    pub fn publish(
        &self,
        target: &Target,
        event: &Event,
        inbox: Option<InboxStamp>,
    ) -> Result<usize, EventError> {
        let reached = match &self.redis {
            None => self.registry.send_stored(target, event, inbox),
            Some(redis) => {
                self.registry.check_size(event)?;
                redis
                    .publish(target, event, inbox)
                    .map_err(|e| self.refused(e))?;
                Ok(self.registry.count_matching(target))
            }
        }?;
        self.count_published(target);
        Ok(reached)
    }

    fn count_published(&self, target: &Target) {
        if self.redis.is_some() && self.registry.partitions().count() > 1 {
            self.registry.count_send();
        }
        if let Some(metrics) = self.registry.metrics() {
            metrics.published(target);
        }
    }

    /// Counts a send the bus refused at once (the caller answers 503);
    /// a waiting send that times out is the inbox's, already stored.
    fn refused(&self, error: EventError) -> EventError {
        if matches!(error, EventError::BusBusy { .. }) {
            self.registry.count_refusal(Refusal::BusBusy);
        }
        error
    }

    /// Users whose events this process reads (own-clients read; 0
    /// otherwise).
    pub fn followed_users(&self) -> usize {
        self.redis
            .as_ref()
            .map_or(0, |redis| redis.followed_users())
    }

    /// Sends waiting for the Redis publisher (0 in-process).
    pub fn queue_depth(&self) -> usize {
        self.redis.as_ref().map_or(0, |redis| redis.queue_depth())
    }

    /// How long a send that must not be dropped may wait for room in the
    /// bus's queue: `bus.timeout` (nothing without Redis).
    pub fn wait_bound(&self) -> Duration {
        self.redis
            .as_ref()
            .map_or(Duration::ZERO, |redis| redis.timeout())
    }

    /// [`Bus::publish`], waiting (until `deadline`) for room when the
    /// bus's queue is full, rather than refusing at once: for sends that
    /// must not be dropped (stored notifications, already committed).
    pub async fn publish_waiting(
        &self,
        target: &Target,
        event: &Event,
        inbox: Option<InboxStamp>,
        deadline: tokio::time::Instant,
    ) -> Result<usize, EventError> {
        let reached = match &self.redis {
            None => self.registry.send_stored(target, event, inbox),
            Some(redis) => {
                self.registry.check_size(event)?;
                redis
                    .publish_waiting(target, event, inbox, deadline)
                    .await?;
                Ok(self.registry.count_matching(target))
            }
        }?;
        self.count_published(target);
        Ok(reached)
    }

    /// Ends the streams `target` selects, in every process (e.g. a
    /// session's at sign-out). Returns how many were in this process.
    pub fn kick(&self, target: &Target) -> usize {
        if let Some(redis) = &self.redis {
            redis.kick(target);
        }
        // Here at once (the copy read back from the stream finds nothing
        // left to end).
        self.registry
            .disconnect_matching(target, DisconnectReason::Kicked)
    }

    /// Whether sends and kicks reach this process from every other now:
    /// always in-process; with Redis, both the publisher and the reader
    /// are connected. Cheap (two atomic loads).
    pub fn connected(&self) -> bool {
        match &self.redis {
            None => true,
            Some(redis) => redis.connected(),
        }
    }

    pub fn status(&self) -> BusStatus {
        match &self.redis {
            None => BusStatus {
                kind: "local",
                connected: true,
                instance: String::new(),
            },
            Some(redis) => redis.status(),
        }
    }

    /// Figures over every process: with Redis, the sum of the latest
    /// reports (this process's own figures are always current), with one
    /// entry per process in `instances`.
    pub fn stats(&self) -> Stats {
        let local = self.registry.stats();
        match &self.redis {
            None => local,
            Some(redis) => redis.cluster_stats(local),
        }
    }

    /// With Redis, before a stream of `user` is registered: makes sure
    /// this process reads what the stream needs, holding that until the
    /// returned [`Following`] is dropped (keep it as long as the stream).
    ///
    /// It waits: for the first read of the stream, in a process that just
    /// started (at most `bus.timeout`; else its first streams would start
    /// on a history of its own, and be reset moments later); with the
    /// own-clients read ([`Follow::Own`]), for the user's channel when
    /// this is the user's first stream here; and, when the client sends
    /// an id of the stream this process follows but newer than what it
    /// read (it comes from a process that was ahead), until this process
    /// has read that far. Those two waits end when the subscription task
    /// has done the barrier (each of its Redis commands bounded by
    /// `bus.timeout`) or has lost its connection (then the next one
    /// follows the user from where the process stood); they are not cut
    /// shorter, because a stream registered before its user's channel is
    /// subscribed could miss events silently. While Redis is unreachable
    /// nothing waits. An id beyond the stream's newest entry (nobody
    /// handed it out) starts the stream with `sse-reset`. Returns at once
    /// without Redis.
    pub async fn follow(&self, user: &UserId, last_event_id: Option<&str>) -> Following {
        match &self.redis {
            None => Following::none(),
            Some(redis) => {
                redis
                    .follow(user, last_event_id.and_then(EventId::parse))
                    .await
            }
        }
    }

    /// Where a client of `user` resuming from `last_event_id` should
    /// resume in this process's history when that id is older than what
    /// the history holds for the user but the Redis stream may still have
    /// it: the history's floor, or the position from which this process
    /// has followed the user (the older part is then read with
    /// [`Bus::older`]). `None`: resume as asked.
    pub fn resume_floor(&self, last_event_id: &str, user: &UserId) -> Option<(EventId, EventId)> {
        let redis = self.redis.as_ref()?;
        let id = EventId::parse(last_event_id)?;
        let partition = self.registry.partitions().of(user);
        let (floor, shared) = self.registry.history_floor(partition);
        let floor = redis.floor_for(user, floor);
        (shared && floor.epoch == id.epoch && id.position < floor.position).then_some((id, floor))
    }

    /// The frames `recipient` missed after `after` up to `upto`, read
    /// from the Redis stream; `None` if it no longer holds them all, if
    /// they are more than the history would hold (entries or bytes), or
    /// if they reach back before `since` (unix ms: when the sign-in
    /// began).
    pub async fn older(
        &self,
        after: EventId,
        upto: EventId,
        recipient: &Recipient<'_>,
        since: Option<u64>,
    ) -> Option<bytes::Bytes> {
        self.redis
            .as_ref()?
            .older(after, upto.position, recipient, since)
            .await
    }

    /// Stops the bus's tasks (the process is shutting down).
    pub fn stop(&self) {
        if let Some(redis) = &self.redis {
            redis.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::BusConfig;

    fn urls(url: &str) -> BusConfig {
        BusConfig {
            url: url.into(),
            ..BusConfig::default()
        }
    }

    #[test]
    fn shards_are_split_at_urls_not_at_every_comma() {
        assert!(urls("").urls().is_empty());
        assert_eq!(
            urls("redis://:pa,ss@a:6379").urls(),
            ["redis://:pa,ss@a:6379"]
        );
        assert_eq!(
            urls("redis://a:6379, rediss://:x,y@b:6380/1 ,").urls(),
            ["redis://a:6379", "rediss://:x,y@b:6380/1"]
        );
    }

    #[test]
    fn the_shared_state_s_shard_does_not_hang_on_the_order_listed() {
        let one = urls("redis://b:6379,redis://:pw@a:6379");
        let other = urls("redis://a:6379/0, redis://b");
        assert_eq!(one.primary_url(), "redis://:pw@a:6379");
        assert_eq!(other.primary_url(), "redis://a:6379/0");
        assert_eq!(urls("redis://x").primary_url(), "redis://x");
    }
}
