//! The inbox's SQL: one set of statements for SQLite and Postgres (through
//! sqlx's `Any` driver). Nothing here knows about streams; the writer and
//! the outbox publish what these functions stored.
//!
//! Rows: one `notifications` row per notification (however many users
//! receive it), one `inbox` row per (user, notification) for sends to
//! users, none per user for broadcasts until that user reads one; "mark
//! all read" keeps one watermark per user (`inbox_marks`).

use std::collections::HashSet;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use super::Audience;
use super::types::{InboxId, InboxItem, InboxPage};
use crate::sse::target::UserId;

/// Rows per multi-row statement, largest first: a batch is cut into these
/// sizes so that only a handful of distinct statements (each prepared and
/// cached once per connection) exist, and no statement nears the engines'
/// bind-parameter limits.
const CHUNKS: [usize; 5] = [256, 64, 16, 4, 1];

/// Rows examined per retention step, so a sweep never holds the write
/// lock for long.
const SWEEP_STEP: i64 = 1000;

const AUDIENCE_USERS: i64 = 0;
const AUDIENCE_ALL: i64 = 1;

/// A notification to store.
pub(crate) struct NewRow<'a> {
    pub audience: &'a Audience,
    pub event: &'a str,
    pub payload: &'a str,
    pub created_at: i64,
}

/// A stored notification that still has to reach live streams.
pub(crate) struct Unpublished {
    pub id: InboxId,
    pub event: String,
    pub payload: String,
    pub audience: Audience,
}

/// Cuts `items` into slices of the sizes in [`CHUNKS`].
fn chunked<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let size = CHUNKS.into_iter().find(|size| *size <= items.len())?;
        let (head, tail) = items.split_at(size);
        items = tail;
        Some(head)
    })
}

/// `($1,$2),($3,$4),…`: `rows` groups of `width` numbered placeholders,
/// starting after `first - 1`.
fn placeholders(rows: usize, width: usize, first: usize) -> String {
    let mut out = String::with_capacity(rows * width * 5);
    for row in 0..rows {
        if row > 0 {
            out.push(',');
        }
        out.push('(');
        for col in 0..width {
            if col > 0 {
                out.push(',');
            }
            out.push('$');
            out.push_str(&(first + row * width + col).to_string());
        }
        out.push(')');
    }
    out
}

/// `$1,$2,…` for an `IN (…)` list.
fn list(count: usize, first: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Inserts `rows` (and their per-user rows) on `conn`, inside whatever
/// transaction the caller holds, and applies the per-user cap to the users
/// they reached. Returns the ids in the order of `rows`.
pub(crate) async fn insert(
    conn: &mut AnyConnection,
    rows: &[NewRow<'_>],
    published_at: Option<i64>,
    max_per_user: i64,
) -> Result<Vec<InboxId>, sqlx::Error> {
    let mut ids = Vec::with_capacity(rows.len());
    for chunk in chunked(rows) {
        let sql = format!(
            "INSERT INTO notifications (event, payload, audience, created_at, published_at) \
             VALUES {} RETURNING id",
            placeholders(chunk.len(), 5, 1)
        );
        let mut query = sqlx::query(&sql);
        for row in chunk {
            let audience = match row.audience {
                Audience::Users(_) => AUDIENCE_USERS,
                Audience::Everyone => AUDIENCE_ALL,
            };
            query = query
                .bind(row.event)
                .bind(row.payload)
                .bind(audience)
                .bind(row.created_at)
                .bind(published_at);
        }
        let mut got: Vec<i64> = query
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| r.try_get::<i64, _>(0))
            .collect::<Result<_, _>>()?;
        // Both engines hand out ids in the order of the VALUES list, but
        // neither promises RETURNING rows in that order: sort to match.
        got.sort_unstable();
        if got.len() != chunk.len() {
            return Err(sqlx::Error::Protocol(format!(
                "inserted {} notifications, got {} ids back",
                chunk.len(),
                got.len()
            )));
        }
        ids.extend(got.into_iter().map(InboxId));
    }

    let mut pairs: Vec<(&UserId, i64)> = Vec::new();
    let mut reached: HashSet<&UserId> = HashSet::new();
    for (row, id) in rows.iter().zip(&ids) {
        if let Audience::Users(users) = row.audience {
            let mut seen = HashSet::new();
            for user in users {
                if seen.insert(user) {
                    pairs.push((user, id.0));
                    reached.insert(user);
                }
            }
        }
    }
    for chunk in chunked(&pairs) {
        let sql = format!(
            "INSERT INTO inbox (user_id, notification_id) VALUES {}",
            placeholders(chunk.len(), 2, 1)
        );
        let mut query = sqlx::query(&sql);
        for (user, id) in chunk {
            query = query.bind(user.as_str()).bind(*id);
        }
        query.execute(&mut *conn).await?;
    }

    let reached: Vec<&UserId> = reached.into_iter().collect();
    for chunk in chunked(&reached) {
        let sql = format!(
            "SELECT r.user_id FROM inbox r JOIN notifications n ON n.id = r.notification_id \
             WHERE r.user_id IN ({}) AND n.audience = 0 \
             GROUP BY r.user_id HAVING COUNT(*) > ${}",
            list(chunk.len(), 1),
            chunk.len() + 1
        );
        let mut query = sqlx::query(&sql);
        for user in chunk {
            query = query.bind(user.as_str());
        }
        let over: Vec<String> = query
            .bind(max_per_user)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?;
        for user in over {
            prune_user(conn, &user, max_per_user).await?;
        }
    }
    Ok(ids)
}

/// Keeps a user's newest `max` rows of sends to users, unread ones
/// first: the oldest read rows go first, unread ones only when nothing
/// read is left. A user's read marks on broadcasts are not counted nor
/// dropped here (dropping one would make its broadcast unread again);
/// they go with their broadcast, which has its own cap.
async fn prune_user(conn: &mut AnyConnection, user: &str, max: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM inbox WHERE user_id = $1 AND notification_id IN (\
           SELECT r.notification_id FROM inbox r JOIN notifications n ON n.id = r.notification_id \
           WHERE r.user_id = $2 AND n.audience = 0 \
           ORDER BY CASE WHEN r.read_at IS NULL THEN 0 ELSE 1 END, r.notification_id DESC \
           LIMIT 1000000000 OFFSET $3)",
    )
    .bind(user)
    .bind(user)
    .bind(max)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

fn item(row: &AnyRow) -> Result<InboxItem, sqlx::Error> {
    Ok(InboxItem {
        id: InboxId(row.try_get("id")?),
        event: row.try_get("event")?,
        payload: row.try_get("payload")?,
        created_at: row.try_get("created_at")?,
        read_at: row.try_get("read_at")?,
        broadcast: row.try_get::<i64, _>("audience")? == AUDIENCE_ALL,
    })
}

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

/// The pool's side: reads and read-state changes.
#[derive(Clone)]
pub(crate) struct Store {
    pool: AnyPool,
}

impl Store {
    pub(crate) fn new(pool: AnyPool) -> Self {
        Store { pool }
    }

    /// The newest `limit` unread notifications, oldest first (the order a
    /// stream sends them in), and how many are unread in all. One query:
    /// the total is a window count over every unread row, taken before
    /// the limit.
    pub(crate) async fn unread(
        &self,
        user: &UserId,
        limit: usize,
    ) -> Result<(Vec<InboxItem>, u64), sqlx::Error> {
        let sql = format!(
            "SELECT u.*, COUNT(*) OVER () AS total FROM ({UNREAD}) u ORDER BY id DESC LIMIT $4"
        );
        let rows = sqlx::query(&sql)
            .bind(user.as_str())
            .bind(user.as_str())
            .bind(user.as_str())
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
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

    /// Marks everything up to `upto` (default: the newest notification)
    /// read; returns the id it went up to (`None`: nothing stored yet).
    pub(crate) async fn mark_all_read(
        &self,
        user: &UserId,
        upto: Option<InboxId>,
        now: i64,
    ) -> Result<Option<InboxId>, sqlx::Error> {
        let newest: Option<i64> = sqlx::query("SELECT MAX(id) FROM notifications")
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

    /// Claims committed rows nobody published yet (`only`: just these) and
    /// returns them to be published. A row is claimed once, whichever
    /// process or task asks first.
    pub(crate) async fn claim_unpublished(
        &self,
        only: Option<&[InboxId]>,
        limit: usize,
        now: i64,
    ) -> Result<Vec<Unpublished>, sqlx::Error> {
        let rows = match only {
            None => {
                sqlx::query(
                    "UPDATE notifications SET published_at = $1 \
                     WHERE published_at IS NULL AND id IN (\
                       SELECT id FROM notifications WHERE published_at IS NULL ORDER BY id LIMIT $2) \
                     RETURNING id, event, payload, audience",
                )
                .bind(now)
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await?
            }
            Some(ids) => {
                let mut rows = Vec::new();
                for chunk in chunked(ids) {
                    let sql = format!(
                        "UPDATE notifications SET published_at = $1 \
                         WHERE published_at IS NULL AND id IN ({}) \
                         RETURNING id, event, payload, audience",
                        list(chunk.len(), 2)
                    );
                    let mut query = sqlx::query(&sql).bind(now);
                    for id in chunk {
                        query = query.bind(id.0);
                    }
                    rows.extend(query.fetch_all(&self.pool).await?);
                }
                rows
            }
        };
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let id = InboxId(row.try_get("id")?);
            let audience = if row.try_get::<i64, _>("audience")? == AUDIENCE_ALL {
                Audience::Everyone
            } else {
                Audience::Users(Vec::new())
            };
            claimed.push(Unpublished {
                id,
                event: row.try_get("event")?,
                payload: row.try_get("payload")?,
                audience,
            });
        }
        claimed.sort_by_key(|u| u.id);
        // The users of every claimed send to users, in one query a chunk.
        let to_users: Vec<InboxId> = claimed
            .iter()
            .filter(|c| matches!(c.audience, Audience::Users(_)))
            .map(|c| c.id)
            .collect();
        for chunk in chunked(&to_users) {
            let sql = format!(
                "SELECT notification_id, user_id FROM inbox WHERE notification_id IN ({})",
                list(chunk.len(), 1)
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id.0);
            }
            for row in query.fetch_all(&self.pool).await? {
                let id = InboxId(row.try_get(0)?);
                let user = UserId::new(row.try_get::<String, _>(1)?);
                if let Ok(at) = claimed.binary_search_by_key(&id, |c| c.id)
                    && let Audience::Users(users) = &mut claimed[at].audience
                {
                    users.push(user);
                }
            }
        }
        Ok(claimed)
    }

    /// One pass of the limits: drops notifications older than
    /// `older_than` (Unix ms), users' rows beyond `max_per_user`,
    /// broadcasts beyond the newest `max_per_user`, and sends to users
    /// whose every row was dropped. Returns the rows deleted.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_cut_into_a_few_fixed_sizes() {
        let items: Vec<u32> = (0..347).collect();
        let sizes: Vec<usize> = chunked(&items).map(<[u32]>::len).collect();
        assert_eq!(sizes, vec![256, 64, 16, 4, 4, 1, 1, 1]);
        assert_eq!(sizes.iter().sum::<usize>(), 347);
        assert_eq!(chunked::<u32>(&[]).count(), 0);
    }

    #[test]
    fn placeholders_are_numbered_in_order() {
        assert_eq!(placeholders(2, 3, 1), "($1,$2,$3),($4,$5,$6)");
        assert_eq!(list(3, 2), "$2,$3,$4");
    }
}
