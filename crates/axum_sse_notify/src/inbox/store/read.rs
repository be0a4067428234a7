// Included once per engine by `store/mod.rs` (`engine!`): the module it
// lands in names `Store`, `DbRow` and the imports.
// Reading a user's inbox: the unread rows a fresh stream starts with,
// pages of everything, counts.

/// The user's unread rows and the unread broadcasts, as one query's
/// `FROM` (columns id, event, payload, created_at, read_at, audience);
/// binds: user, user, user.
const UNREAD: &str = "\
    SELECT n.id AS id, n.event AS event, n.payload AS payload, \
           n.created_at AS created_at, r.read_at AS read_at, n.audience AS audience \
      FROM inbox r JOIN notifications n ON n.id = r.notification_id \
     WHERE r.user_id = $1 AND r.read_at IS NULL \
    UNION ALL \
    SELECT n.id, n.event, n.payload, n.created_at, CAST(NULL AS BIGINT), n.audience \
      FROM notifications n \
     WHERE n.audience = 1 \
       AND n.id > COALESCE((SELECT m.read_upto FROM inbox_marks m WHERE m.user_id = $2), 0) \
       AND NOT EXISTS (SELECT 1 FROM inbox r2 WHERE r2.user_id = $3 AND r2.notification_id = n.id)";

/// [`UNREAD`] as of a place in the publish order: published rows numbered
/// up to it (later ones reach the stream live), and published rows without
/// a number (written by a server from before numbers existed, e.g. during
/// a rolling upgrade: they were published when written); binds: user,
/// upto, upto, user, user.
const UNREAD_UPTO: &str = "\
    SELECT n.id AS id, n.event AS event, n.payload AS payload, \
           n.created_at AS created_at, r.read_at AS read_at, n.audience AS audience \
      FROM inbox r JOIN notifications n ON n.id = r.notification_id \
     WHERE r.user_id = $1 AND r.read_at IS NULL \
       AND (n.published_seq <= $2 OR (n.published_seq IS NULL AND n.published_at IS NOT NULL)) \
    UNION ALL \
    SELECT n.id, n.event, n.payload, n.created_at, CAST(NULL AS BIGINT), n.audience \
      FROM notifications n \
     WHERE n.audience = 1 \
       AND (n.published_seq <= $3 OR (n.published_seq IS NULL AND n.published_at IS NOT NULL)) \
       AND n.id > COALESCE((SELECT m.read_upto FROM inbox_marks m WHERE m.user_id = $4), 0) \
       AND NOT EXISTS (SELECT 1 FROM inbox r2 WHERE r2.user_id = $5 AND r2.notification_id = n.id)";

impl Store {
    /// The last number of the publish order handed out.
    pub(crate) async fn last_seq(&self) -> Result<InboxSeq, sqlx::Error> {
        let last: i64 = sqlx::query("SELECT last FROM inbox_publish_seq WHERE id = 1")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        Ok(InboxSeq(last.max(0) as u64))
    }

    /// Everything the user received (read or not) that was published
    /// after `after` and up to `upto` in the publish order: at most the
    /// `limit` last of it, in publish order, each with its number; and how
    /// many there were in all.
    pub(crate) async fn published_between(
        &self,
        user: &UserId,
        after: InboxSeq,
        upto: InboxSeq,
        limit: usize,
    ) -> Result<(Vec<(InboxItem, InboxSeq)>, u64), sqlx::Error> {
        let (after, upto) = (after.0 as i64, upto.0 as i64);
        let rows = sqlx::query(
            "SELECT u.*, COUNT(*) OVER () AS total FROM (\
               SELECT n.id AS id, n.event AS event, n.payload AS payload, \
                      n.created_at AS created_at, r.read_at AS read_at, n.audience AS audience, \
                      n.published_seq AS seq \
                 FROM inbox r JOIN notifications n ON n.id = r.notification_id \
                WHERE r.user_id = $1 AND n.published_seq > $2 AND n.published_seq <= $3 \
               UNION ALL \
               SELECT n.id, n.event, n.payload, n.created_at, \
                      CASE WHEN n.id <= COALESCE(m.read_upto, 0) THEN m.read_at ELSE NULL END, \
                      n.audience, n.published_seq \
                 FROM notifications n LEFT JOIN inbox_marks m ON m.user_id = $4 \
                WHERE n.audience = 1 AND n.published_seq > $5 AND n.published_seq <= $6 \
                  AND n.id > COALESCE(m.since, 0) \
                  AND NOT EXISTS (SELECT 1 FROM inbox r2 \
                                   WHERE r2.user_id = $7 AND r2.notification_id = n.id)\
             ) u ORDER BY seq DESC LIMIT $8",
        )
        .bind(user.as_str())
        .bind(after)
        .bind(upto)
        .bind(user.as_str())
        .bind(after)
        .bind(upto)
        .bind(user.as_str())
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        let total = match rows.first() {
            Some(row) => row.try_get::<i64, _>("total")?.max(0) as u64,
            None => 0,
        };
        let mut items = Vec::with_capacity(rows.len());
        for row in rows.iter().rev() {
            let seq = InboxSeq(row.try_get::<i64, _>("seq")?.max(0) as u64);
            items.push((item(row)?, seq));
        }
        Ok((items, total))
    }

    /// The newest `limit` unread notifications, oldest first (the order a
    /// stream sends them in), and how many are unread in all; with `upto`,
    /// only those published up to that place in the publish order. One
    /// query: the total is a window count over every unread row, taken
    /// before the limit.
    pub(crate) async fn unread(
        &self,
        user: &UserId,
        upto: Option<InboxSeq>,
        limit: usize,
    ) -> Result<(Vec<InboxItem>, u64), sqlx::Error> {
        let rows = match upto {
            None => {
                let sql = format!(
                    "SELECT u.*, COUNT(*) OVER () AS total FROM ({UNREAD}) u ORDER BY id DESC LIMIT $4"
                );
                sqlx::query(&sql)
                    .bind(user.as_str())
                    .bind(user.as_str())
                    .bind(user.as_str())
                    .bind(limit as i64)
                    .fetch_all(&self.pool)
                    .await?
            }
            Some(upto) => {
                let sql = format!(
                    "SELECT u.*, COUNT(*) OVER () AS total FROM ({UNREAD_UPTO}) u \
                     ORDER BY id DESC LIMIT $6"
                );
                sqlx::query(&sql)
                    .bind(user.as_str())
                    .bind(upto.0 as i64)
                    .bind(upto.0 as i64)
                    .bind(user.as_str())
                    .bind(user.as_str())
                    .bind(limit as i64)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        let total = match rows.first() {
            Some(row) => row.try_get::<i64, _>("total")?.max(0) as u64,
            None => 0,
        };
        let mut items = rows.iter().map(item).collect::<Result<Vec<_>, _>>()?;
        items.reverse();
        Ok((items, total))
    }

    pub(crate) async fn unread_count(&self, user: &UserId) -> Result<u64, sqlx::Error> {
        let sql = format!("SELECT COUNT(*) FROM ({UNREAD}) u");
        let count: i64 = sqlx::query(&sql)
            .bind(user.as_str())
            .bind(user.as_str())
            .bind(user.as_str())
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        Ok(count.max(0) as u64)
    }

    /// One page, newest first, of everything the user received (read or
    /// not), older than `before`.
    pub(crate) async fn page(
        &self,
        user: &UserId,
        before: Option<InboxId>,
        limit: usize,
    ) -> Result<InboxPage, sqlx::Error> {
        let before = before.map_or(i64::MAX, |id| id.0);
        let rows = sqlx::query(
            "SELECT * FROM (\
               SELECT n.id AS id, n.event AS event, n.payload AS payload, \
                      n.created_at AS created_at, r.read_at AS read_at, n.audience AS audience \
                 FROM inbox r JOIN notifications n ON n.id = r.notification_id \
                WHERE r.user_id = $1 AND r.notification_id < $2 \
               UNION ALL \
               SELECT n.id, n.event, n.payload, n.created_at, \
                      CASE WHEN n.id <= COALESCE(m.read_upto, 0) THEN m.read_at ELSE NULL END, \
                      n.audience \
                 FROM notifications n LEFT JOIN inbox_marks m ON m.user_id = $3 \
                WHERE n.audience = 1 AND n.id < $4 AND n.id > COALESCE(m.since, 0) \
                  AND NOT EXISTS (SELECT 1 FROM inbox r2 \
                                   WHERE r2.user_id = $5 AND r2.notification_id = n.id)\
             ) u ORDER BY id DESC LIMIT $6",
        )
        .bind(user.as_str())
        .bind(before)
        .bind(user.as_str())
        .bind(before)
        .bind(user.as_str())
        .bind(limit as i64 + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut items = rows.iter().map(item).collect::<Result<Vec<_>, _>>()?;
        let next_before = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|i| i.id)
        } else {
            None
        };
        Ok(InboxPage {
            items,
            next_before,
            unread: self.unread_count(user).await?,
        })
    }
}
