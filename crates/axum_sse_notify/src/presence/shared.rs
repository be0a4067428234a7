//! Presence between processes, in the bus's Redis: each process writes
//! its members under a key of its own that expires after three intervals,
//! and its name in a sorted set scored by when it last wrote; it reads
//! the members of every process that wrote within three intervals.

use std::time::Duration;

use crate::bus::Bus;
use crate::redis_link::RedisLink;
use crate::registry::PresenceSnapshot;
use crate::target::{Tag, UserId};

/// The snapshot as stored: plain strings, so that any process reads it.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Stored {
    users: Vec<(String, String, usize)>,
    channels: Vec<(String, Vec<String>)>,
}

pub(super) struct SharedPresence {
    link: RedisLink,
    instance: String,
}

impl SharedPresence {
    /// With the Redis bus only.
    pub(super) fn for_bus(bus: &Bus) -> Option<Self> {
        let config = bus.redis_config()?;
        let link = match RedisLink::new(config) {
            Ok(link) => link,
            Err(e) => {
                tracing::warn!(error = %e, "presence: this process only");
                return None;
            }
        };
        Some(SharedPresence {
            link,
            instance: bus.status().instance,
        })
    }

    fn node_key(&self, instance: &str) -> String {
        format!("{}presence:node:{instance}", self.link.prefix)
    }

    /// Writes `local`, reads the other live processes' members (merged);
    /// `None` when Redis did not answer (the last view stays).
    pub(super) async fn exchange(
        &self,
        local: &PresenceSnapshot,
        interval: Duration,
    ) -> Option<PresenceSnapshot> {
        let stored = Stored {
            users: local
                .users
                .iter()
                .map(|(user, (name, n))| (user.to_string(), name.to_string(), *n))
                .collect(),
            channels: local
                .channels
                .iter()
                .map(|(tag, users)| {
                    (
                        tag.to_string(),
                        users.iter().map(ToString::to_string).collect(),
                    )
                })
                .collect(),
        };
        let text = serde_json::to_string(&stored).ok()?;
        let ttl = interval.saturating_mul(3).max(Duration::from_millis(10));
        let now = crate::registry::unix_millis_now();
        let nodes = format!("{}presence:nodes", self.link.prefix);
        let mut conn = self.link.connection().await.ok()?;
        let live: redis::RedisResult<(Vec<String>,)> = redis::pipe()
            .cmd("SET")
            .arg(self.node_key(&self.instance))
            .arg(text)
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .ignore()
            .cmd("ZADD")
            .arg(&nodes)
            .arg(now)
            .arg(&self.instance)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&nodes)
            .arg("-inf")
            .arg(now.saturating_sub(ttl.as_millis() as u64 * 10))
            .ignore()
            .cmd("ZRANGEBYSCORE")
            .arg(&nodes)
            .arg(now.saturating_sub(ttl.as_millis() as u64))
            .arg("+inf")
            .query_async(&mut conn)
            .await;
        let others: Vec<String> = match live {
            Ok((live,)) => live.into_iter().filter(|i| *i != self.instance).collect(),
            Err(e) => {
                self.link.failed();
                tracing::warn!(error = %e, "presence: Redis did not answer");
                return None;
            }
        };
        if others.is_empty() {
            return Some(PresenceSnapshot::default());
        }
        let keys: Vec<String> = others.iter().map(|i| self.node_key(i)).collect();
        let texts: redis::RedisResult<Vec<Option<String>>> =
            redis::cmd("MGET").arg(keys).query_async(&mut conn).await;
        let texts = match texts {
            Ok(texts) => texts,
            Err(e) => {
                self.link.failed();
                tracing::warn!(error = %e, "presence: Redis did not answer");
                return None;
            }
        };
        let mut merged = PresenceSnapshot::default();
        // A key that expired (a process that stopped) is nil: skipped.
        for text in texts.into_iter().flatten() {
            let Ok(stored) = serde_json::from_str::<Stored>(&text) else {
                continue;
            };
            for (user, name, n) in stored.users {
                merged
                    .users
                    .entry(UserId::new(user))
                    .or_insert_with(|| (name.into(), 0))
                    .1 += n;
            }
            for (tag, users) in stored.channels {
                let Ok(tag) = Tag::parse(&tag) else { continue };
                merged
                    .channels
                    .entry(tag)
                    .or_default()
                    .extend(users.into_iter().map(UserId::new));
            }
        }
        Some(merged)
    }
}
