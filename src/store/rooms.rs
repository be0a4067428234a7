//! Demo room membership: who joined which room through `/home`. The
//! demo's channel policy (`auth::channels`) reads it when a stream asks
//! for `room:<name>`.

use sqlx::Row;

use super::{Db, StoreError};

/// Rooms one user may be in, at most.
pub const MAX_ROOMS_PER_USER: i64 = 50;

impl Db {
    /// Adds `user` to `room`; `Ok(false)` when the user is in
    /// [`MAX_ROOMS_PER_USER`] rooms already. Joining twice is one join.
    pub async fn join_room(&self, user_id: &str, room: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let count: i64 = sqlx::query("SELECT COUNT(*) AS n FROM room_members WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        if count >= MAX_ROOMS_PER_USER {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO room_members (user_id, room, joined_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, room) DO NOTHING",
        )
        .bind(user_id)
        .bind(room)
        .bind(crate::sse::unix_millis_now() as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn leave_room(&self, user_id: &str, room: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM room_members WHERE user_id = $1 AND room = $2")
            .bind(user_id)
            .bind(room)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn rooms_of(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT room FROM room_members WHERE user_id = $1 ORDER BY room")
            .bind(user_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>("room")?))
            .collect()
    }

    pub async fn is_member(&self, user_id: &str, room: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 AS one FROM room_members WHERE user_id = $1 AND room = $2")
            .bind(user_id)
            .bind(room)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.is_some())
    }
}
