// Included once per engine by `store/mod.rs` (`engine!`): the module it
// lands in names `Store`, `DbRow` and the imports.
// Claiming committed rows nobody published yet, for the relay and for
// transactional sends.

impl Store {
    /// Claims committed rows nobody published yet (`only`: just these),
    /// numbers them in the publish order (by id), and returns them to be
    /// published. A row is claimed once, whichever process or task asks
    /// first.
    pub(crate) async fn claim_unpublished(
        &self,
        only: Option<&[InboxId]>,
        limit: usize,
        now: i64,
    ) -> Result<Vec<Unpublished>, sqlx::Error> {
        // One transaction: the rows are claimed and numbered in the publish
        // order together (the counter stays locked until the commit).
        let mut tx = self.pool.begin().await?;
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
                .fetch_all(&mut *tx)
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
                    rows.extend(query.fetch_all(&mut *tx).await?);
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
                seq: InboxSeq(0),
            });
        }
        claimed.sort_by_key(|u| u.id);
        if !claimed.is_empty() {
            let first = take_seq(&mut tx, claimed.len()).await?;
            let ids: Vec<InboxId> = claimed.iter().map(|c| c.id).collect();
            number(&mut tx, &ids, first).await?;
            for (n, row) in claimed.iter_mut().enumerate() {
                row.seq = InboxSeq((first + n as i64).max(0) as u64);
            }
        }
        tx.commit().await?;
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
}
