// Included once per engine by `store/mod.rs` (`engine!`): the module it
// lands in names `Store`, `DbRow` and the imports.
// Retention and caps in bulk: old notifications, broadcasts beyond the
// cap, users over the cap, sends whose every recipient row went.

/// Rows examined per retention step, so a sweep never holds the write
/// lock for long.
const SWEEP_STEP: i64 = 1000;

impl Store {
    /// One pass of the limits: drops notifications older than
    /// `older_than` (Unix ms), users' rows beyond `max_per_user` (by the
    /// insert's rule: from the senders holding the most, see
    /// `prune_user`), broadcasts beyond the newest `max_per_user`, and
    /// sends to users whose every row was dropped. Returns the rows
    /// deleted.
    pub(crate) async fn sweep(
        &self,
        older_than: i64,
        max_per_user: i64,
    ) -> Result<u64, sqlx::Error> {
        let mut deleted = 0;
        loop {
            let ids = self
                .ids(
                    "SELECT id FROM notifications WHERE created_at < $1 ORDER BY id LIMIT $2",
                    older_than,
                )
                .await?;
            deleted += self.delete_notifications(&ids).await?;
            if (ids.len() as i64) < SWEEP_STEP {
                break;
            }
        }
        // Broadcasts beyond the newest `max_per_user`: no user sees more.
        let threshold: Option<i64> = sqlx::query(
            "SELECT id FROM notifications WHERE audience = 1 ORDER BY id DESC LIMIT 1 OFFSET $1",
        )
        .bind(max_per_user)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
        if let Some(threshold) = threshold {
            loop {
                let ids = self
                    .ids(
                        "SELECT id FROM notifications WHERE audience = 1 AND id <= $1 \
                         ORDER BY id LIMIT $2",
                        threshold,
                    )
                    .await?;
                deleted += self.delete_notifications(&ids).await?;
                if (ids.len() as i64) < SWEEP_STEP {
                    break;
                }
            }
        }
        let over: Vec<String> =
            sqlx::query("SELECT user_id FROM inbox GROUP BY user_id HAVING COUNT(*) > $1 LIMIT $2")
                .bind(max_per_user)
                .bind(SWEEP_STEP)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| r.try_get::<String, _>(0))
                .collect::<Result<_, _>>()?;
        let mut conn = self.pool.acquire().await?;
        for user in over {
            deleted += prune_user(&mut conn, &user, max_per_user).await?;
        }
        drop(conn);
        let orphans = self
            .ids(
                "SELECT id FROM notifications n WHERE audience = 0 AND published_at IS NOT NULL \
                   AND id < $1 \
                   AND NOT EXISTS (SELECT 1 FROM inbox r WHERE r.notification_id = n.id) \
                 ORDER BY id LIMIT $2",
                i64::MAX,
            )
            .await?;
        deleted += self.delete_notifications(&orphans).await?;
        Ok(deleted)
    }

    /// Runs a `SELECT id … $1 … LIMIT $2` with `first` and the sweep step.
    async fn ids(&self, sql: &str, first: i64) -> Result<Vec<InboxId>, sqlx::Error> {
        sqlx::query(sql)
            .bind(first)
            .bind(SWEEP_STEP)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get::<i64, _>(0).map(InboxId))
            .collect()
    }

    async fn delete_notifications(&self, ids: &[InboxId]) -> Result<u64, sqlx::Error> {
        let mut deleted = 0;
        for chunk in chunked(ids) {
            let mut tx = self.pool.begin().await?;
            for table in [
                "DELETE FROM inbox WHERE notification_id IN",
                "DELETE FROM notifications WHERE id IN",
            ] {
                let sql = format!("{table} ({})", list(chunk.len(), 1));
                let mut query = sqlx::query(&sql);
                for id in chunk {
                    query = query.bind(id.0);
                }
                deleted += query.execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
        }
        Ok(deleted)
    }
}
