//! Storing notifications, inside whatever transaction the caller holds
//! (the writer's group commit, or a transactional send's), and the
//! per-user cap applied to the users a batch reached.
//!
//! The cap evicts by sender, not by age alone: were it "oldest first,
//! whoever sent them", anyone could wipe a user's inbox by sending
//! `max_per_user` notifications. The senders holding the most of the
//! user's rows are cut down to a common level ([`shares`]), so a flood
//! removes the flooder's own rows, and a sender holding fewer rows than
//! the level loses none.

/// The statements, once per connection type: the app's own transaction
/// may be on a typed `PgConnection` or `SqliteConnection`, the inbox's own
/// work is on an `AnyConnection`. Same SQL, same steps; only the types the
/// driver binds and decodes differ.
macro_rules! on_connection {
    ($engine:ident, $conn:ty) => {
        pub(crate) mod $engine {
            use std::collections::HashSet;

            use sqlx::Row;

            use super::super::{AUDIENCE_ALL, AUDIENCE_USERS, NewRow, chunked, list, placeholders};
            use crate::inbox::{Audience, InboxId};
            use crate::target::UserId;

            /// Inserts `rows` (and their per-user rows) on `conn`, inside whatever
            /// transaction the caller holds, and applies the per-user cap to the users
            /// they reached. Returns the ids in the order of `rows`.
            /// Takes `n` numbers of the publish order (see the migration
            /// `inbox_publish_seq`): returns the first. The counter's row
            /// stays locked until `conn`'s transaction ends, so numbers
            /// are committed in the order they were taken.
            pub(crate) async fn take_seq(conn: &mut $conn, n: usize) -> Result<i64, sqlx::Error> {
                let last: i64 = sqlx::query(
                    "UPDATE inbox_publish_seq SET last = last + $1 WHERE id = 1 RETURNING last",
                )
                .bind(n as i64)
                .fetch_one(&mut *conn)
                .await?
                .try_get(0)?;
                Ok(last - n as i64 + 1)
            }

            /// Numbers claimed rows in the publish order, `first` up, in
            /// the order given.
            pub(crate) async fn number(
                conn: &mut $conn,
                ids: &[InboxId],
                first: i64,
            ) -> Result<(), sqlx::Error> {
                for (n, id) in ids.iter().enumerate() {
                    sqlx::query("UPDATE notifications SET published_seq = $1 WHERE id = $2")
                        .bind(first + n as i64)
                        .bind(id.0)
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            }

            /// `published`: when, and the publish-order number of the first
            /// row (the others follow in order); `None`: unpublished.
            pub(crate) async fn insert(
                conn: &mut $conn,
                rows: &[NewRow<'_>],
                published: Option<(i64, i64)>,
                max_per_user: i64,
            ) -> Result<Vec<InboxId>, sqlx::Error> {
                let mut ids = Vec::with_capacity(rows.len());
                let mut seq = published.map(|(_, first)| first);
                for chunk in chunked(rows) {
                    let sql = format!(
                        "INSERT INTO notifications \
                         (event, payload, audience, created_at, published_at, published_seq) \
                         VALUES {} RETURNING id",
                        placeholders(chunk.len(), 6, 1)
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
                            .bind(published.map(|(at, _)| at))
                            .bind(seq);
                        seq = seq.map(|n| n + 1);
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

                let mut pairs: Vec<(&UserId, i64, Option<&str>)> = Vec::new();
                let mut reached: HashSet<&UserId> = HashSet::new();
                for (row, id) in rows.iter().zip(&ids) {
                    if let Audience::Users(users) = row.audience {
                        let mut seen = HashSet::new();
                        for user in users {
                            if seen.insert(user) {
                                pairs.push((user, id.0, row.sender));
                                reached.insert(user);
                            }
                        }
                    }
                }
                for chunk in chunked(&pairs) {
                    let sql = format!(
                        "INSERT INTO inbox (user_id, notification_id, sender) VALUES {}",
                        placeholders(chunk.len(), 3, 1)
                    );
                    let mut query = sqlx::query(&sql);
                    for (user, id, sender) in chunk {
                        query = query.bind(user.as_str()).bind(*id).bind(*sender);
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

            /// Keeps `max` of a user's rows of sends to users, taking from the
            /// senders holding the most ([`shares`]); within one sender, its oldest
            /// read rows go first, its oldest unread ones only when none of its rows
            /// is read. Rows without a sender (the backend's) count as one sender. A
            /// user's read marks on broadcasts are not counted nor dropped here
            /// (dropping one would make its broadcast unread again); they go with
            /// their broadcast, which has its own cap.
            ///
            /// Cost: one grouped read of the user's rows, then one delete per sender
            /// that loses rows, each a range of the `(user_id, sender)` index. Every
            /// such sender loses at least one row, so there are never more deletes
            /// than rows over the cap.
            pub(crate) async fn prune_user(
                conn: &mut $conn,
                user: &str,
                max: i64,
            ) -> Result<u64, sqlx::Error> {
                let rows = sqlx::query(
                    "SELECT r.sender AS sender, COUNT(*) AS total, MAX(r.notification_id) AS newest \
                       FROM inbox r JOIN notifications n ON n.id = r.notification_id \
                      WHERE r.user_id = $1 AND n.audience = 0 \
                      GROUP BY r.sender",
                )
                .bind(user)
                .fetch_all(&mut *conn)
                .await?;
                let mut senders = Vec::with_capacity(rows.len());
                let mut held = Vec::with_capacity(rows.len());
                for row in &rows {
                    senders.push(row.try_get::<Option<String>, _>("sender")?);
                    held.push(super::Held {
                        rows: row.try_get("total")?,
                        newest: row.try_get("newest")?,
                    });
                }
                let keep = super::shares(&held, max);
                let mut deleted = 0;
                for ((sender, held), keep) in senders.iter().zip(&held).zip(keep) {
                    if keep < held.rows {
                        deleted += prune_sender(conn, user, sender.as_deref(), keep).await?;
                    }
                }
                Ok(deleted)
            }

            /// Keeps `sender`'s newest `keep` rows in `user`'s inbox, unread ones
            /// first.
            async fn prune_sender(
                conn: &mut $conn,
                user: &str,
                sender: Option<&str>,
                keep: i64,
            ) -> Result<u64, sqlx::Error> {
                // Two spellings rather than a null-safe comparison, which Postgres
                // does not answer from an index.
                let which = match sender {
                    Some(_) => "r.sender = $4",
                    None => "r.sender IS NULL",
                };
                let sql = format!(
                    "DELETE FROM inbox WHERE user_id = $1 AND notification_id IN (\
                       SELECT r.notification_id FROM inbox r JOIN notifications n ON n.id = r.notification_id \
                       WHERE r.user_id = $2 AND {which} AND n.audience = 0 \
                       ORDER BY CASE WHEN r.read_at IS NULL THEN 0 ELSE 1 END, r.notification_id DESC \
                       LIMIT 1000000000 OFFSET $3)"
                );
                let mut query = sqlx::query(&sql).bind(user).bind(user).bind(keep);
                if let Some(sender) = sender {
                    query = query.bind(sender);
                }
                Ok(query.execute(&mut *conn).await?.rows_affected())
            }
        }
    };
}

on_connection!(any, sqlx::AnyConnection);
#[cfg(feature = "postgres")]
on_connection!(postgres, sqlx::PgConnection);
#[cfg(feature = "sqlite")]
on_connection!(sqlite, sqlx::SqliteConnection);

/// What one sender holds of a user's inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Held {
    /// Rows.
    pub rows: i64,
    /// The newest row's notification id.
    pub newest: i64,
}

/// How many rows each sender keeps (in the order of `held`) when the
/// user may keep `max` in all: senders with fewer rows than a common
/// level keep all of theirs; the rest are cut to that level (the largest
/// level the cap allows). The rows the level leaves over go one each to
/// the cut senders whose newest row is oldest: of two senders cut alike,
/// the one still sending gives way. The outcome is that of evicting one
/// row at a time from the largest sender.
pub(super) fn shares(held: &[Held], max: i64) -> Vec<i64> {
    let mut keep: Vec<i64> = held.iter().map(|h| h.rows).collect();
    let mut order: Vec<usize> = (0..held.len()).collect();
    order.sort_by_key(|&i| (held[i].rows, held[i].newest));
    let mut room = max.max(0);
    for (n, &i) in order.iter().enumerate() {
        let left = (order.len() - n) as i64;
        if held[i].rows.saturating_mul(left) <= room {
            room -= held[i].rows;
            continue;
        }
        // This sender and every larger one are cut to the level; once
        // there, their sizes no longer differ, only their newest rows.
        let (level, extra) = (room / left, (room % left) as usize);
        let cut = &mut order[n..];
        cut.sort_by_key(|&j| held[j].newest);
        for (k, &j) in cut.iter().enumerate() {
            keep[j] = level + i64::from(k < extra);
        }
        break;
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(rows: &[(i64, i64)]) -> Vec<Held> {
        rows.iter()
            .map(|&(rows, newest)| Held { rows, newest })
            .collect()
    }

    #[test]
    fn under_the_cap_everyone_keeps_everything() {
        assert_eq!(shares(&held(&[(5, 1), (3, 2)]), 8), vec![5, 3]);
        assert_eq!(shares(&[], 8), Vec::<i64>::new());
    }

    #[test]
    fn floods_are_cut_and_small_senders_keep_all() {
        // The victim's friend (5) and four flooders of 250, cap 200.
        let got = shares(
            &held(&[(5, 5), (250, 900), (250, 901), (250, 902), (250, 903)]),
            200,
        );
        assert_eq!(got[0], 5);
        assert_eq!(got.iter().sum::<i64>(), 200);
        // 195 over four: 48 each and three left over, for the flooders
        // that sent last least recently.
        assert_eq!(&got[1..], &[49, 49, 49, 48]);
    }

    #[test]
    fn one_sender_alone_is_cut_to_the_cap() {
        assert_eq!(shares(&held(&[(7, 7)]), 5), vec![5]);
        assert_eq!(shares(&held(&[(7, 7)]), 0), vec![0]);
    }

    #[test]
    fn ties_cost_the_sender_still_sending() {
        // 98 and 98 over 195 with 5 of a small sender's: the one whose
        // newest row is newer gives the row.
        assert_eq!(
            shares(&held(&[(98, 10), (98, 11), (5, 1)]), 200),
            vec![98, 97, 5]
        );
    }

    #[test]
    fn many_throw_away_senders_cut_everyone_down() {
        // A friend's 5 rows, then 1 000 accounts sending one row each,
        // cap 1 000: the friend keeps one; the newest sender gets none.
        let mut rows = vec![(5, 0)];
        rows.extend((1..=1000).map(|n| (1, n)));
        let got = shares(&held(&rows), 1000);
        assert_eq!(got[0], 1);
        assert_eq!(got[1000], 0);
        assert_eq!(got.iter().sum::<i64>(), 1000);
    }

    #[test]
    fn many_small_senders_share_the_cap() {
        // What the cap does not protect against: 1 001 senders of one row
        // each, cap 1 000: one loses its only row.
        let many: Vec<(i64, i64)> = (0..1001).map(|n| (1, n)).collect();
        let got = shares(&held(&many), 1000);
        assert_eq!(got.iter().sum::<i64>(), 1000);
        assert_eq!(got[1000], 0, "the most recent sender");
    }
}
