//! The inbox: persistent notifications that outlive connections and
//! restarts, with read state per user.
//!
//! A persistent send ([`crate::Notifier::notify`]) is stored before
//! it is published: the group-commit `writer` writes it, then publishes
//! it with the row's id appended to the event id (`<event id>:<inbox id>`),
//! so the browser can mark it read. A transactional send
//! ([`crate::Notifier::notify_in`]) is written in the caller's
//! transaction and published after the commit (`outbox`). A stream that
//! opens without `Last-Event-ID` first gets an `inbox` summary and the
//! newest unread notifications (`backlog`). The `sweep` keeps the
//! tables within `inbox.retention` and `inbox.max_per_user`.

pub mod types;

#[cfg(feature = "inbox")]
mod backlog;
#[cfg(feature = "inbox")]
mod outbox;
#[cfg(feature = "inbox")]
pub mod schema;
#[cfg(feature = "inbox")]
mod shared_read;
#[cfg(feature = "inbox")]
mod store;
#[cfg(feature = "inbox")]
mod sweep;
#[cfg(feature = "inbox")]
mod writer;

pub use types::{InboxId, InboxItem, InboxPage, InboxSummary};

#[cfg(feature = "inbox")]
pub use server::*;

#[cfg(feature = "inbox")]
mod server {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::{mpsc, oneshot};

    pub use super::backlog::Backlog;
    pub use super::outbox::{InTransaction, Pending};
    pub use super::store::InboxPool;
    use super::store::Store;
    pub use super::writer::Stored;
    use super::writer::{Job, Writer, now_ms};
    use super::{InboxId, InboxPage, InboxSummary};
    use crate::bus::Bus;
    use crate::event::{Event, EventError};
    use crate::event_id::InboxStamp;
    use crate::metrics::{DbOp, timed};
    use crate::target::{Target, UserId};

    /// Limits and timings of the inbox.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct InboxConfig {
        /// Notifications older than this are deleted.
        pub retention: Duration,
        /// Rows kept per user (and broadcasts kept in all); beyond it rows
        /// go from the senders holding the most of that user's rows (the
        /// backend's sends count as one sender), each sender's oldest read
        /// ones first, then its oldest unread.
        pub max_per_user: usize,
        /// Persistent sends written in one commit, at most.
        pub batch_max: usize,
        /// Persistent sends waiting for the writer, at most; a send beyond
        /// it waits for room.
        pub queue_max: usize,
        /// How often committed, unpublished rows are looked for.
        pub relay_interval: Duration,
        /// How often retention and the per-user cap are applied in bulk
        /// (they are also applied at every insert).
        pub sweep_interval: Duration,
    }

    impl Default for InboxConfig {
        fn default() -> Self {
            InboxConfig {
                retention: Duration::from_secs(30 * 24 * 3600),
                max_per_user: 1000,
                batch_max: 1000,
                queue_max: 16_384,
                relay_interval: Duration::from_secs(1),
                sweep_interval: Duration::from_secs(60),
            }
        }
    }

    /// Who a persistent notification is for.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Audience {
        /// These users (one stored row each; duplicates count once).
        Users(Vec<UserId>),
        /// Every user, including those offline now: one row in all,
        /// however many users. Accounts created later do not see it (see
        /// [`Inbox::open_account`]).
        Everyone,
    }

    impl Audience {
        pub fn user(user: UserId) -> Self {
            Audience::Users(vec![user])
        }

        pub fn users(users: impl IntoIterator<Item = UserId>) -> Self {
            Audience::Users(users.into_iter().collect())
        }
    }

    /// Why a persistent send or an inbox request failed.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub enum InboxError {
        #[error(transparent)]
        Event(#[from] EventError),
        #[error("the notifier has no inbox (no database was given to it)")]
        NoInbox,
        #[error("the inbox's database failed: {0}")]
        Store(String),
        #[error("the inbox writer has stopped")]
        Stopped,
        #[error("unknown notification ids: {0:?}")]
        UnknownIds(Vec<InboxId>),
    }

    impl InboxError {
        pub(crate) fn store(e: sqlx::Error) -> Self {
            InboxError::Store(e.to_string())
        }
    }

    pub(super) struct InboxState {
        pub store: Store,
        pub bus: Bus,
        pub config: InboxConfig,
        jobs: mpsc::Sender<Job>,
        /// Backlog reads in flight, at most: one pool connection fewer
        /// than the pool has, so a storm of connects never leaves the
        /// writer waiting for a connection (persistent sends go on).
        pub backlog_readers: tokio::sync::Semaphore,
        /// Backlog reads not started yet, joined by concurrent connects of
        /// the same user at the same position (see `shared_read`).
        pub backlog_reads: super::shared_read::SharedReads,
        /// Held from numbering stored rows in the publish order to handing
        /// them to the bus (the writer's commits, transactional publishes,
        /// the relay): this process publishes them in the order of their
        /// numbers, which is what makes a client's inbox position exact.
        pub order: Arc<tokio::sync::Mutex<()>>,
    }

    /// The inbox of a [`crate::Notifier`]. Cheap to clone.
    #[derive(Clone)]
    pub struct Inbox {
        pub(super) inner: Arc<InboxState>,
    }

    /// Runs `work` every `period` until aborted; a failed pass is logged
    /// and the next one tried on time.
    fn every<F, Fut>(
        period: Duration,
        what: &'static str,
        mut work: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), InboxError>> + Send,
    {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = work().await {
                    tracing::warn!(error = %e, "inbox {what} failed; retrying");
                }
            }
        })
    }

    /// Queues a stored notification for the live streams of its audience,
    /// its inbox id and publish-order number on its event id. Returns the
    /// connections reached. A full bus queue is waited out (bounded): the
    /// row is already marked published, so a send dropped here would
    /// reach nobody live. Callers hold [`InboxState::order`].
    pub(super) async fn publish(
        bus: &Bus,
        audience: &Audience,
        event: &Event,
        stamp: InboxStamp,
    ) -> usize {
        let id = stamp.id;
        // One wait for the whole send, however many users it is for.
        let deadline = tokio::time::Instant::now() + bus.wait_bound();
        let result = match audience {
            Audience::Everyone => {
                bus.publish_waiting(&Target::all(), event, Some(stamp), deadline)
                    .await
            }
            Audience::Users(users) => {
                let mut reached = 0;
                let mut seen = std::collections::HashSet::new();
                for user in users.iter().filter(|u| seen.insert(*u)) {
                    match bus
                        .publish_waiting(&Target::user(user.clone()), event, Some(stamp), deadline)
                        .await
                    {
                        Ok(n) => reached += n,
                        Err(e) => {
                            log_unsent(id, &e);
                        }
                    }
                }
                Ok(reached)
            }
        };
        result.unwrap_or_else(|e| log_unsent(id, &e))
    }

    fn log_unsent(id: InboxId, error: &EventError) -> usize {
        // Checked before storing: only a changed limit, or a bus that
        // stayed full for `bus.timeout`, gets here. The row stays in the
        // inbox (and in the next fresh stream's backlog).
        tracing::warn!(%id, %error, "stored notification not published");
        0
    }

    impl Inbox {
        /// Starts the writer task (on the current tokio runtime).
        pub fn start(pool: impl Into<InboxPool>, bus: Bus, config: InboxConfig) -> Inbox {
            let pool = pool.into();
            let (jobs, receiver) = mpsc::channel(config.queue_max.max(1));
            let order = Arc::new(tokio::sync::Mutex::new(()));
            let store = Store::new(pool.clone());
            let writer = Writer {
                pool: pool.clone(),
                store: store.clone(),
                bus: bus.clone(),
                order: order.clone(),
                batch_max: config.batch_max.max(1),
                max_per_user: config.max_per_user as i64,
            };
            tokio::spawn(writer.run(receiver));
            let readers = (pool.max_connections() as usize).saturating_sub(1);
            Inbox {
                inner: Arc::new(InboxState {
                    backlog_readers: tokio::sync::Semaphore::new(readers.max(1)),
                    backlog_reads: Default::default(),
                    store,
                    bus,
                    config,
                    jobs,
                    order,
                }),
            }
        }

        pub fn config(&self) -> &InboxConfig {
            &self.inner.config
        }

        pub(super) fn check(&self, event: &Event) -> Result<(), InboxError> {
            let size = event.data().len();
            let max = self.inner.bus.registry().config().max_payload;
            if size > max {
                return Err(EventError::PayloadTooLarge { size, max }.into());
            }
            Ok(())
        }

        /// Stores `event` for `audience` (in the writer's next group
        /// commit), then publishes it. Resolves once both happened. A send
        /// of the backend's own: see [`Inbox::store_from`].
        pub async fn store(&self, audience: Audience, event: Event) -> Result<Stored, InboxError> {
            self.store_from(None, audience, event).await
        }

        /// [`Inbox::store`] on behalf of `sender` (a user; `None`: the
        /// backend). The per-user cap evicts from the senders holding the
        /// most of a user's rows, so one user's flood pushes out its own
        /// rows first (see [`InboxConfig::max_per_user`]).
        pub async fn store_from(
            &self,
            sender: Option<UserId>,
            audience: Audience,
            event: Event,
        ) -> Result<Stored, InboxError> {
            self.check(&event)?;
            let (reply, answer) = oneshot::channel();
            let job = Job {
                audience,
                sender,
                event,
                created_at: now_ms(),
                reply,
            };
            self.inner
                .jobs
                .send(job)
                .await
                .map_err(|_| InboxError::Stopped)?;
            answer.await.map_err(|_| InboxError::Stopped)?
        }

        /// Call when an account is created: broadcasts sent before it are
        /// not shown to it (without this, a new account sees every
        /// broadcast still within retention, as unread).
        pub async fn open_account(&self, user: &UserId) -> Result<(), InboxError> {
            self.inner
                .store
                .open_account(user, now_ms())
                .await
                .map_err(InboxError::store)
        }

        /// One page of `user`'s notifications, newest first.
        pub async fn page(
            &self,
            user: &UserId,
            before: Option<InboxId>,
            limit: usize,
        ) -> Result<InboxPage, InboxError> {
            let page = self.inner.store.page(user, before, limit);
            timed(self.metrics(), DbOp::InboxRead, page)
                .await
                .map_err(InboxError::store)
        }

        pub async fn unread_count(&self, user: &UserId) -> Result<u64, InboxError> {
            let count = self.inner.store.unread_count(user);
            timed(self.metrics(), DbOp::InboxRead, count)
                .await
                .map_err(InboxError::store)
        }

        /// Marks `ids` read for `user` and tells the user's streams. Ids
        /// the user cannot see fail the whole request, changing nothing.
        pub async fn mark_read(
            &self,
            user: &UserId,
            ids: &[InboxId],
        ) -> Result<InboxSummary, InboxError> {
            let store = &self.inner.store;
            let unknown = store
                .not_visible(user, ids)
                .await
                .map_err(InboxError::store)?;
            if !unknown.is_empty() {
                return Err(InboxError::UnknownIds(unknown));
            }
            let mark = store.mark_read(user, ids, now_ms());
            timed(self.metrics(), DbOp::InboxMark, mark)
                .await
                .map_err(InboxError::store)?;
            let summary = InboxSummary {
                unread: self.unread_count(user).await?,
                read: ids.to_vec(),
                ..InboxSummary::default()
            };
            self.tell(user, &summary);
            Ok(summary)
        }

        /// Marks everything up to `upto` (default: all) read for `user`
        /// and tells the user's streams. The summary's `read_upto` is at
        /// most the user's own newest notification.
        pub async fn mark_all_read(
            &self,
            user: &UserId,
            upto: Option<InboxId>,
        ) -> Result<InboxSummary, InboxError> {
            let mark = self.inner.store.mark_all_read(user, upto, now_ms());
            let upto = timed(self.metrics(), DbOp::InboxMark, mark)
                .await
                .map_err(InboxError::store)?;
            let summary = InboxSummary {
                unread: self.unread_count(user).await?,
                read_upto: upto,
                ..InboxSummary::default()
            };
            self.tell(user, &summary);
            Ok(summary)
        }

        fn metrics(&self) -> Option<&crate::metrics::SseMetrics> {
            self.inner.bus.registry().metrics()
        }

        /// Pushes an `inbox` event to every stream of `user`.
        fn tell(&self, user: &UserId, summary: &InboxSummary) {
            let event = Event::reserved(InboxSummary::EVENT, summary);
            if let Err(e) = self
                .inner
                .bus
                .publish(&Target::user(user.clone()), &event, None)
            {
                tracing::warn!(error = %e, "cannot push the inbox summary");
            }
        }

        /// Starts the relay and the sweep, each on its own interval (the
        /// first pass one interval from now: the server relays once itself
        /// before it serves).
        pub fn spawn_maintenance(&self) -> Vec<tokio::task::JoinHandle<()>> {
            let (relay, sweep) = (self.clone(), self.clone());
            vec![
                every(self.config().relay_interval, "relay", move || {
                    let inbox = relay.clone();
                    async move { inbox.relay_once().await.map(drop) }
                }),
                every(self.config().sweep_interval, "sweep", move || {
                    let inbox = sweep.clone();
                    async move { inbox.sweep_once().await.map(drop) }
                }),
            ]
        }
    }
}
