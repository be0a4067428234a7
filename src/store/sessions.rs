//! Sign-in sessions for `tower-sessions`, stored in the app's database.
//!
//! tower-sessions does the session work (random ids, cookies, expiry,
//! id rotation); this is only where the records live.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};

use super::{Db, now_secs};
use crate::ops::db_timing::{DbOp, DbTimings, timed};

/// A [`SessionStore`] over [`Db`].
#[derive(Clone)]
pub struct DbSessionStore {
    db: Db,
    /// Where query latencies are counted, if anywhere.
    timing: Option<DbTimings>,
}

impl std::fmt::Debug for DbSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbSessionStore").finish_non_exhaustive()
    }
}

impl DbSessionStore {
    pub fn new(db: Db) -> Self {
        DbSessionStore { db, timing: None }
    }

    /// Times its queries into `timings` (when there are any).
    pub fn timed_by(mut self, timings: Option<DbTimings>) -> Self {
        self.timing = timings;
        self
    }

    fn metrics(&self) -> Option<&DbTimings> {
        self.timing.as_ref()
    }

    /// Deletes expired sessions every `period`, so the table does not
    /// grow with sessions nobody uses any more.
    pub fn spawn_cleanup(&self, period: Duration) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                if let Err(e) = store.delete_expired().await {
                    tracing::warn!("deleting expired sessions failed: {e}");
                }
            }
        })
    }

    async fn insert(&self, record: &Record, upsert: bool) -> session_store::Result<bool> {
        let data = serde_json::to_string(&record.data)
            .map_err(|e| session_store::Error::Encode(e.to_string()))?;
        let sql = if upsert {
            "INSERT INTO sessions (id, data, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at"
        } else {
            "INSERT INTO sessions (id, data, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO NOTHING"
        };
        let query = sqlx::query(sql)
            .bind(record.id.to_string())
            .bind(data)
            .bind(record.expiry_date.unix_timestamp())
            .execute(self.db.pool());
        let done = timed(self.metrics(), DbOp::SessionSave, query)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }
}

fn backend(e: sqlx::Error) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

#[async_trait]
impl SessionStore for DbSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        // A fresh random id that collides is re-drawn rather than
        // overwriting someone else's session.
        while !self.insert(record, false).await? {
            record.id = Id::default();
        }
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.insert(record, true).await.map(|_| ())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let query =
            sqlx::query("SELECT data, expires_at FROM sessions WHERE id = $1 AND expires_at > $2")
                .bind(id.to_string())
                .bind(now_secs())
                .fetch_optional(self.db.pool());
        let row = timed(self.metrics(), DbOp::SessionLoad, query)
            .await
            .map_err(backend)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let data: String = row.try_get("data").map_err(backend)?;
        let expires_at: i64 = row.try_get("expires_at").map_err(backend)?;
        Ok(Some(Record {
            id: *id,
            data: serde_json::from_str(&data)
                .map_err(|e| session_store::Error::Decode(e.to_string()))?,
            expiry_date: OffsetDateTime::from_unix_timestamp(expires_at)
                .map_err(|e| session_store::Error::Decode(e.to_string()))?,
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(id.to_string())
            .execute(self.db.pool())
            .await
            .map_err(backend)?;
        Ok(())
    }
}

#[async_trait]
impl ExpiredDeletion for DbSessionStore {
    async fn delete_expired(&self) -> session_store::Result<()> {
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now_secs())
            .execute(self.db.pool())
            .await
            .map_err(backend)?;
        Ok(())
    }
}
