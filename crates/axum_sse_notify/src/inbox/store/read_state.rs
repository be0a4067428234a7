// Included once per engine by `store/mod.rs` (`engine!`): the module it
// lands in names `Store`, `DbRow` and the imports.
// Changing read state: marking ids read (after checking the user may
// see them), everything up to an id, and an account's starting point.

impl Store {
    /// Of `ids`, those the user cannot see: neither theirs nor a
    /// broadcast (unknown, deleted, or another user's).
    pub(crate) async fn not_visible(
        &self,
        user: &UserId,
        ids: &[InboxId],
    ) -> Result<Vec<InboxId>, sqlx::Error> {
        let mut missing = Vec::new();
        for chunk in chunked(ids) {
            // A broadcast from before the account existed is not the
            // user's to mark.
            let sql = format!(
                "SELECT notification_id FROM inbox WHERE user_id = $1 AND notification_id IN ({}) \
                 UNION SELECT id FROM notifications WHERE audience = 1 AND id IN ({}) \
                   AND id > COALESCE((SELECT since FROM inbox_marks WHERE user_id = ${}), 0)",
                list(chunk.len(), 2),
                list(chunk.len(), chunk.len() + 2),
                2 * chunk.len() + 2
            );
            let mut query = sqlx::query(&sql).bind(user.as_str());
            for id in chunk.iter().chain(chunk) {
                query = query.bind(id.0);
            }
            query = query.bind(user.as_str());
            let found: HashSet<i64> = query
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| r.try_get::<i64, _>(0))
                .collect::<Result<_, _>>()?;
            missing.extend(chunk.iter().filter(|id| !found.contains(&id.0)));
        }
        Ok(missing)
    }

    /// Marks `ids` (all visible to the user: see [`Store::not_visible`])
    /// read. Rows already read keep their time.
    pub(crate) async fn mark_read(
        &self,
        user: &UserId,
        ids: &[InboxId],
        now: i64,
    ) -> Result<(), sqlx::Error> {
        for chunk in chunked(ids) {
            let sql = format!(
                "UPDATE inbox SET read_at = $1 \
                 WHERE user_id = $2 AND read_at IS NULL AND notification_id IN ({})",
                list(chunk.len(), 3)
            );
            let mut query = sqlx::query(&sql).bind(now).bind(user.as_str());
            for id in chunk {
                query = query.bind(id.0);
            }
            query.execute(&self.pool).await?;
            // Broadcasts have no row for this user yet: one records the read.
            let sql = format!(
                "INSERT INTO inbox (user_id, notification_id, read_at) \
                 SELECT $1, id, $2 FROM notifications WHERE audience = 1 AND id IN ({}) \
                 ON CONFLICT (user_id, notification_id) DO NOTHING",
                list(chunk.len(), 3)
            );
            let mut query = sqlx::query(&sql).bind(user.as_str()).bind(now);
            for id in chunk {
                query = query.bind(id.0);
            }
            query.execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Marks everything up to `upto` (default: the user's newest
    /// notification) read; returns the id it went up to (`None`: the user
    /// has none). The bound is the newest notification the user can see,
    /// never the newest of all: the answer must not tell a user how much
    /// others received.
    pub(crate) async fn mark_all_read(
        &self,
        user: &UserId,
        upto: Option<InboxId>,
        now: i64,
    ) -> Result<Option<InboxId>, sqlx::Error> {
        // Two index lookups: the user's rows (primary key), the newest
        // broadcast the user may see (the broadcasts' index).
        let newest: Option<i64> = sqlx::query(
            "SELECT MAX(id) FROM (\
               SELECT MAX(notification_id) AS id FROM inbox WHERE user_id = $1 \
               UNION ALL \
               SELECT MAX(id) FROM notifications WHERE audience = 1 \
                 AND id > COALESCE((SELECT since FROM inbox_marks WHERE user_id = $2), 0)\
             ) u",
        )
        .bind(user.as_str())
        .bind(user.as_str())
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        let Some(newest) = newest else {
            return Ok(None);
        };
        let upto = upto.map_or(newest, |u| u.0.min(newest));
        sqlx::query(
            "UPDATE inbox SET read_at = $1 \
             WHERE user_id = $2 AND read_at IS NULL AND notification_id <= $3",
        )
        .bind(now)
        .bind(user.as_str())
        .bind(upto)
        .execute(&self.pool)
        .await?;
        sqlx::query(
            "INSERT INTO inbox_marks (user_id, read_upto, read_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET \
               read_upto = CASE WHEN excluded.read_upto > inbox_marks.read_upto \
                                THEN excluded.read_upto ELSE inbox_marks.read_upto END, \
               read_at = excluded.read_at",
        )
        .bind(user.as_str())
        .bind(upto)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(Some(InboxId(upto)))
    }

    /// Starts a new account's inbox after every broadcast sent so far:
    /// those are neither unread nor listed for it.
    pub(crate) async fn open_account(&self, user: &UserId, now: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO inbox_marks (user_id, read_upto, read_at, since) \
             SELECT $1, COALESCE(MAX(id), 0), $2, COALESCE(MAX(id), 0) FROM notifications \
             WHERE true ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user.as_str())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
