//! Group commit: one task writes every persistent send. Sends that arrive
//! while a batch is being committed wait in the channel and go into the
//! next batch together, so SQLite commits (and syncs) once per batch, not
//! once per notification. A send is published, and its caller answered,
//! only after its batch committed.

use tokio::sync::{mpsc, oneshot};

use super::store::{InboxPool, NewRow, Store};
use super::types::InboxId;
use super::{Audience, InboxError, publish};
use crate::bus::Bus;
use crate::event::Event;
use crate::event_id::InboxStamp;
use crate::metrics::{DbOp, timed};
use crate::target::UserId;

/// One persistent send waiting for its batch.
pub(super) struct Job {
    pub audience: Audience,
    /// The user who sent it (`None`: the backend): the cap evicts by it.
    pub sender: Option<UserId>,
    pub event: Event,
    pub created_at: i64,
    pub reply: oneshot::Sender<Result<Stored, InboxError>>,
}

/// A persistent send, stored and published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// The row's id: what the browser marks read.
    pub id: InboxId,
    /// Connections of this process it was queued for.
    pub delivered: usize,
}

pub(super) struct Writer {
    pub pool: InboxPool,
    /// The same database, for reads.
    pub store: Store,
    pub bus: Bus,
    pub order: std::sync::Arc<tokio::sync::Mutex<()>>,
    pub batch_max: usize,
    pub max_per_user: i64,
}

impl Writer {
    /// Runs until every sender is gone.
    pub(super) async fn run(self, mut jobs: mpsc::Receiver<Job>) {
        // Where the publish order stands, before the first id goes out
        // (the server also reads it before it serves: see `relay_once`).
        match self.store.last_seq().await {
            Ok(seq) => self.bus.registry().start_inbox_seq(seq),
            Err(e) => tracing::warn!(error = %e, "cannot read the inbox's publish position"),
        }
        let mut batch = Vec::with_capacity(self.batch_max);
        while jobs.recv_many(&mut batch, self.batch_max).await > 0 {
            let metrics = self.bus.registry().metrics();
            let _order = self.order.lock().await;
            match timed(metrics, DbOp::InboxCommit, self.commit(&batch)).await {
                Ok(stamps) => {
                    for (job, stamp) in batch.drain(..).zip(stamps) {
                        let delivered = publish(&self.bus, &job.audience, &job.event, stamp).await;
                        let _ = job.reply.send(Ok(Stored {
                            id: stamp.id,
                            delivered,
                        }));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, sends = batch.len(), "cannot store notifications");
                    let message = e.to_string();
                    for job in batch.drain(..) {
                        let _ = job.reply.send(Err(InboxError::Store(message.clone())));
                    }
                }
            }
        }
    }

    async fn commit(&self, batch: &[Job]) -> Result<Vec<InboxStamp>, sqlx::Error> {
        let rows: Vec<NewRow<'_>> = batch
            .iter()
            .map(|job| NewRow {
                audience: &job.audience,
                sender: job.sender.as_ref().map(UserId::as_str),
                event: job.event.name().as_str(),
                payload: job.event.data(),
                created_at: job.created_at,
            })
            .collect();
        // Stored as published: this task publishes right after the commit.
        // Should the process die in between, the rows are in the inbox and
        // reach the user as unread on their next connect.
        let ids = self
            .pool
            .insert_committed(&rows, now_ms(), self.max_per_user)
            .await?;
        if let Some(metrics) = self.bus.registry().metrics() {
            metrics.inbox_rows_written(rows.len() as u64);
        }
        Ok(ids)
    }
}

pub(super) fn now_ms() -> i64 {
    crate::clock::unix_millis_now() as i64
}
