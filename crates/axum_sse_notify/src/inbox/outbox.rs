//! Transactional sends: rows written in the caller's own transaction, so
//! a notification exists exactly when the caller's other writes do. They
//! are stored unpublished; [`Pending::publish`] publishes them once the
//! transaction committed, and the relay publishes whatever a crash (or a
//! forgotten `publish`) left behind. Each row is claimed in the database
//! before it is published, so it goes out once however many callers,
//! tasks or processes try.

use sqlx::AnyConnection;
#[cfg(feature = "postgres")]
use sqlx::PgConnection;
#[cfg(feature = "sqlite")]
use sqlx::SqliteConnection;

use super::store::{self, NewRow, Unpublished};
use super::types::InboxId;
use super::writer::now_ms;
use super::{Audience, Inbox, InboxError, publish};
use crate::event::Event;
use crate::event_id::InboxStamp;
use crate::metrics::{DbOp, timed};

/// Rows claimed per relay step.
const RELAY_STEP: usize = 500;

/// The caller's connection, inside the caller's own transaction: pass
/// `&mut *tx` of an `sqlx::Transaction` on an `AnyPool`, a `PgPool` or a
/// `SqlitePool` (the last two with the `postgres` / `sqlite` features).
/// The database must be the inbox's.
pub enum InTransaction<'c> {
    Any(&'c mut AnyConnection),
    #[cfg(feature = "postgres")]
    Postgres(&'c mut PgConnection),
    #[cfg(feature = "sqlite")]
    Sqlite(&'c mut SqliteConnection),
}

impl<'c> From<&'c mut AnyConnection> for InTransaction<'c> {
    fn from(conn: &'c mut AnyConnection) -> Self {
        InTransaction::Any(conn)
    }
}

/// `&mut tx` works as well as `&mut *tx`.
impl<'c> From<&'c mut sqlx::Transaction<'_, sqlx::Any>> for InTransaction<'c> {
    fn from(tx: &'c mut sqlx::Transaction<'_, sqlx::Any>) -> Self {
        InTransaction::Any(tx)
    }
}

#[cfg(feature = "postgres")]
impl<'c> From<&'c mut sqlx::Transaction<'_, sqlx::Postgres>> for InTransaction<'c> {
    fn from(tx: &'c mut sqlx::Transaction<'_, sqlx::Postgres>) -> Self {
        InTransaction::Postgres(tx)
    }
}

#[cfg(feature = "sqlite")]
impl<'c> From<&'c mut sqlx::Transaction<'_, sqlx::Sqlite>> for InTransaction<'c> {
    fn from(tx: &'c mut sqlx::Transaction<'_, sqlx::Sqlite>) -> Self {
        InTransaction::Sqlite(tx)
    }
}

#[cfg(feature = "postgres")]
impl<'c> From<&'c mut PgConnection> for InTransaction<'c> {
    fn from(conn: &'c mut PgConnection) -> Self {
        InTransaction::Postgres(conn)
    }
}

#[cfg(feature = "sqlite")]
impl<'c> From<&'c mut SqliteConnection> for InTransaction<'c> {
    fn from(conn: &'c mut SqliteConnection) -> Self {
        InTransaction::Sqlite(conn)
    }
}

/// Notifications written in a transaction that has not been published
/// yet. Publish it after the commit; if that never happens (the process
/// died, the caller forgot), the relay publishes it within
/// `inbox.relay_interval`. A rolled-back transaction left no rows, so
/// publishing its `Pending` does nothing.
#[must_use = "call `publish` after the transaction commits (else the relay publishes it later)"]
pub struct Pending {
    inbox: Inbox,
    ids: Vec<InboxId>,
}

impl Pending {
    /// The stored rows' ids.
    pub fn ids(&self) -> Vec<InboxId> {
        self.ids.clone()
    }

    /// Publishes the rows the transaction committed and nobody published
    /// yet. Returns the connections of this process reached. What is
    /// published is what the database holds under those ids, never this
    /// handle's copy: after a rollback, SQLite may give the same id to
    /// another transaction's row.
    pub async fn publish(self) -> Result<usize, InboxError> {
        let _order = self.inbox.inner.order.lock().await;
        let claimed = self
            .inbox
            .inner
            .store
            .claim_unpublished(Some(&self.ids), self.ids.len(), now_ms())
            .await
            .map_err(InboxError::store)?;
        Ok(self.inbox.publish_claimed(&claimed).await)
    }
}

impl Inbox {
    /// Writes `event` for `audience` on `conn` (the caller's transaction:
    /// pass `&mut *tx`, on any of the engines [`InTransaction`] names),
    /// unpublished. On SQLite, begin that transaction
    /// with a write (or `BEGIN IMMEDIATE`): a deferred transaction that
    /// read first can fail to upgrade while the writer commits.
    pub async fn stage<'c>(
        &self,
        conn: impl Into<InTransaction<'c>>,
        audience: Audience,
        event: Event,
    ) -> Result<Pending, InboxError> {
        self.check(&event)?;
        let row = NewRow {
            audience: &audience,
            // A transactional send is the backend's own.
            sender: None,
            event: event.name().as_str(),
            payload: event.data(),
            created_at: now_ms(),
        };
        let max = self.inner.config.max_per_user as i64;
        let rows = [row];
        let ids = match conn.into() {
            InTransaction::Any(conn) => store::insert(conn, &rows, None, max).await,
            #[cfg(feature = "postgres")]
            InTransaction::Postgres(conn) => store::insert_postgres(conn, &rows, None, max).await,
            #[cfg(feature = "sqlite")]
            InTransaction::Sqlite(conn) => store::insert_sqlite(conn, &rows, None, max).await,
        }
        .map_err(InboxError::store)?;
        Ok(Pending {
            inbox: self.clone(),
            ids,
        })
    }

    /// Publishes every committed row nobody published: the relay's work,
    /// also run once before the server accepts connections. Returns how
    /// many rows it published.
    pub async fn relay_once(&self) -> Result<usize, InboxError> {
        let _order = self.inner.order.lock().await;
        // Run before the server serves: ids carry the publish position
        // from the first stream on (read once; see `start_inbox_seq`).
        let registry = self.inner.bus.registry();
        if !registry.knows_inbox_seq() {
            let seq = self
                .inner
                .store
                .last_seq()
                .await
                .map_err(InboxError::store)?;
            registry.start_inbox_seq(seq);
        }
        let mut published = 0;
        loop {
            let claim = self
                .inner
                .store
                .claim_unpublished(None, RELAY_STEP, now_ms());
            let metrics = self.inner.bus.registry().metrics();
            let claimed = timed(metrics, DbOp::InboxRelay, claim)
                .await
                .map_err(InboxError::store)?;
            self.publish_claimed(&claimed).await;
            published += claimed.len();
            if claimed.len() < RELAY_STEP {
                break;
            }
        }
        if published > 0 {
            tracing::info!(published, "relay published committed notifications");
        }
        Ok(published)
    }

    /// Publishes rows just claimed; returns the connections reached.
    async fn publish_claimed(&self, claimed: &[Unpublished]) -> usize {
        let mut delivered = 0;
        for row in claimed {
            match Event::text(row.event.clone(), row.payload.clone()) {
                Ok(event) => {
                    let stamp = InboxStamp {
                        id: row.id,
                        seq: row.seq,
                    };
                    delivered += publish(&self.inner.bus, &row.audience, &event, stamp).await;
                }
                Err(e) => {
                    tracing::warn!(id = %row.id, error = %e, "stored notification not published")
                }
            }
        }
        delivered
    }
}
