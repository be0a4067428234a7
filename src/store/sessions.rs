//! Sign-in sessions for `tower-sessions`, stored in the app's database.
//!
//! tower-sessions does the session work (random ids, cookies, expiry,
//! id rotation); this is only where the records live.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};

use super::{Db, now_secs};
use crate::auth::stream_sessions::StreamSessions;
use crate::ops::db_timing::{DbOp, DbTimings, timed};

/// Not session data: the role of the session's account, read with the
/// session in one query by [`DbSessionStore::load`] (JSON `null`: the
/// account is gone; absent: the session is not signed in), and never
/// stored. Spares every signed-in request (every stream connect) a query.
pub(crate) const LOADED_ROLE: &str = "_account_role";

/// Not session data either: when the session expires (unix seconds), as
/// stored, read with it by [`DbSessionStore::load`] and never stored, so
/// that what remembers a session's answer does not outlive the session.
pub(crate) const LOADED_EXPIRES_AT: &str = "_session_expires_at";

/// The session key that names its account, written at sign-in
/// (`auth::state` uses it as its own) and kept beside the data on save.
pub(crate) const USER_ID: &str = "user_id";

/// A [`SessionStore`] over [`Db`].
#[derive(Clone)]
pub struct DbSessionStore {
    db: Db,
    /// Where query latencies are counted, if anywhere.
    timing: Option<DbTimings>,
    /// Told of every session saved or deleted here (a sign-in, a
    /// sign-out), so that stream connects stop using what it remembers.
    forget: Option<Arc<StreamSessions>>,
}

impl std::fmt::Debug for DbSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbSessionStore").finish_non_exhaustive()
    }
}

impl DbSessionStore {
    pub fn new(db: Db) -> Self {
        DbSessionStore {
            db,
            timing: None,
            forget: None,
        }
    }

    /// Tells `sessions` of every session saved or deleted.
    pub fn forgetting_in(mut self, sessions: Arc<StreamSessions>) -> Self {
        self.forget = Some(sessions);
        self
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
        if let Some(forget) = &self.forget {
            forget.forget(&record.id);
        }
        let mut data = record.data.clone();
        data.remove(LOADED_ROLE);
        data.remove(LOADED_EXPIRES_AT);
        let user_id = data
            .get(USER_ID)
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        let data = serde_json::to_string(&data)
            .map_err(|e| session_store::Error::Encode(e.to_string()))?;
        let sql = if upsert {
            "INSERT INTO sessions (id, data, expires_at, user_id) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET data = excluded.data, \
             expires_at = excluded.expires_at, user_id = excluded.user_id"
        } else {
            "INSERT INTO sessions (id, data, expires_at, user_id) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING"
        };
        let query = sqlx::query(sql)
            .bind(record.id.to_string())
            .bind(data)
            .bind(record.expiry_date.unix_timestamp())
            .bind(user_id)
            .execute(self.db.pool());
        let done = timed(self.metrics(), DbOp::SessionSave, query).await;
        // Again once written: a connect that read the row between the
        // first forget and the write is not kept either.
        if let Some(forget) = &self.forget {
            forget.forget(&record.id);
        }
        Ok(done.map_err(backend)?.rows_affected() > 0)
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
        let query = sqlx::query(
            "SELECT s.data, s.expires_at, s.user_id, u.role FROM sessions s \
             LEFT JOIN users u ON u.id = s.user_id WHERE s.id = $1 AND s.expires_at > $2",
        )
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
        let user_id: Option<String> = row.try_get("user_id").map_err(backend)?;
        let role: Option<String> = row.try_get("role").map_err(backend)?;
        let mut data: std::collections::HashMap<String, serde_json::Value> =
            serde_json::from_str(&data).map_err(|e| session_store::Error::Decode(e.to_string()))?;
        data.remove(LOADED_ROLE);
        data.insert(LOADED_EXPIRES_AT.to_owned(), expires_at.into());
        // Only for the account the session's data names (a row written by
        // an older binary may not have the column in step).
        let names = data.get(USER_ID).and_then(|v| v.as_str());
        if user_id.is_some() && names == user_id.as_deref() {
            data.insert(LOADED_ROLE.to_owned(), role.into());
        }
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date: OffsetDateTime::from_unix_timestamp(expires_at)
                .map_err(|e| session_store::Error::Decode(e.to_string()))?,
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        if let Some(forget) = &self.forget {
            forget.forget(id);
        }
        let deleted = sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(id.to_string())
            .execute(self.db.pool())
            .await;
        // Again once deleted: a connect that read the row meanwhile is
        // not kept either.
        if let Some(forget) = &self.forget {
            forget.forget(id);
        }
        deleted.map_err(backend)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::users::Role;

    fn record(data: &[(&str, serde_json::Value)]) -> Record {
        Record {
            id: Id::default(),
            data: data
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            expiry_date: OffsetDateTime::now_utc() + time::Duration::hours(1),
        }
    }

    async fn loaded_role(store: &DbSessionStore, id: &Id) -> Option<serde_json::Value> {
        let record = store.load(id).await.unwrap().expect("the session is there");
        record.data.get(LOADED_ROLE).cloned()
    }

    /// The role comes with the session, current on every load (a grant
    /// shows at the next request), is never written back, and says when
    /// the account is gone; a session without an account has none.
    #[tokio::test]
    async fn the_role_is_read_with_the_session() {
        let dir = std::env::temp_dir().join(format!("sessions-test-{}", uuid::Uuid::new_v4()));
        let db = Db::connect(None, &dir).await.unwrap();
        let store = DbSessionStore::new(db.clone());
        let user = db.create_user("alice", "hash").await.unwrap();

        let mut signed_in = record(&[(USER_ID, user.id.clone().into())]);
        store.create(&mut signed_in).await.unwrap();
        assert_eq!(
            loaded_role(&store, &signed_in.id).await,
            Some("user".into())
        );

        db.set_role("alice", Role::Admin).await.unwrap();
        assert_eq!(
            loaded_role(&store, &signed_in.id).await,
            Some("admin".into())
        );

        // Saved with the loaded role in it (a request that changed its
        // session): the stored data does not keep it.
        let mut loaded = store.load(&signed_in.id).await.unwrap().unwrap();
        loaded.data.insert("extra".into(), 1.into());
        store.save(&loaded).await.unwrap();
        let raw: String = sqlx::query_scalar("SELECT data FROM sessions WHERE id = $1")
            .bind(signed_in.id.to_string())
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert!(!raw.contains(LOADED_ROLE), "{raw}");

        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(&user.id)
            .execute(db.pool())
            .await
            .unwrap();
        assert_eq!(
            loaded_role(&store, &signed_in.id).await,
            Some(serde_json::Value::Null)
        );

        // A row whose column names another account than its data (an
        // older binary's write): no role from the join, the caller reads
        // the data's own account.
        let bob = db.create_user("bob", "hash").await.unwrap();
        db.set_role("bob", Role::Admin).await.unwrap();
        let mut mismatched = record(&[(USER_ID, "someone-else".into())]);
        store.create(&mut mismatched).await.unwrap();
        sqlx::query("UPDATE sessions SET user_id = $1 WHERE id = $2")
            .bind(&bob.id)
            .bind(mismatched.id.to_string())
            .execute(db.pool())
            .await
            .unwrap();
        assert_eq!(loaded_role(&store, &mismatched.id).await, None);

        let mut anonymous = record(&[("csrf", "x".into())]);
        store.create(&mut anonymous).await.unwrap();
        assert_eq!(loaded_role(&store, &anonymous.id).await, None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
