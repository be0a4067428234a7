//! Storing notifications, inside whatever transaction the caller holds
//! (the writer's group commit, or a transactional send's), and the
//! per-user cap applied to the users a batch reached.

use std::collections::HashSet;

use sqlx::{AnyConnection, Row};

use super::{AUDIENCE_ALL, AUDIENCE_USERS, NewRow, chunked, list, placeholders};
use crate::sse::inbox::{Audience, InboxId};
use crate::sse::target::UserId;

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
pub(super) async fn prune_user(
    conn: &mut AnyConnection,
    user: &str,
    max: i64,
) -> Result<u64, sqlx::Error> {
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
