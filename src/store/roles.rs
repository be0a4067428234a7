//! The record of role changes that keeps open streams in step with
//! `sse_notify admin` (written by [`Db::set_role`], read by
//! `ops::roles`).

use sqlx::Row;

use super::{Db, StoreError};

/// One recorded role change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleChange {
    pub id: i64,
    pub user_id: String,
}

impl Db {
    /// The newest change's id, 0 when there is none: where a process that
    /// just started begins (it has no streams from before).
    pub async fn last_role_change(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(id), 0) AS last FROM role_changes")
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get::<i64, _>("last")?)
    }

    /// Changes with an id above `after`, oldest first, at most `limit`:
    /// the primary key bounds the read, however many rows are kept.
    pub async fn role_changes_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<RoleChange>, StoreError> {
        let rows =
            sqlx::query("SELECT id, user_id FROM role_changes WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after)
                .bind(limit)
                .fetch_all(self.pool())
                .await?;
        rows.iter()
            .map(|r| {
                Ok(RoleChange {
                    id: r.try_get("id")?,
                    user_id: r.try_get("user_id")?,
                })
            })
            .collect()
    }

    /// Deletes changes recorded before `before` (Unix seconds); returns
    /// how many. Every process has long applied them by then.
    pub async fn prune_role_changes(&self, before: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM role_changes WHERE changed_at < $1")
            .bind(before)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }
}
