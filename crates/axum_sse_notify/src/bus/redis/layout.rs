//! Processes set up otherwise. Every process of a partitioned bus must
//! name the same partitions and shards: one that differs appends a user's
//! events to another stream than the others read, and what passes between
//! them is lost without a reset. So each process writes its layout beside
//! its figures (expiring as they do) and reads back the one written
//! before it: another layout is logged as an error, at most once a minute.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

use super::{BusState, timed_out};
use crate::bus::BusConfig;
use crate::partition::shard_address;

/// How often a mismatch is logged again while it lasts.
const TELL_EVERY: Duration = Duration::from_secs(60);

/// The partitions and the shards' addresses (sorted: their order in
/// `bus.url` places nothing).
fn fingerprint(config: &BusConfig) -> String {
    let mut shards: Vec<String> = config.urls().into_iter().map(shard_address).collect();
    shards.sort();
    format!(
        "partitions={};shards={}",
        config.partitions.count(),
        shards.join(",")
    )
}

/// Writes this process's layout and compares it with the one before.
pub(super) async fn check(
    state: &BusState,
    conn: &mut MultiplexedConnection,
    period: Duration,
    told: &mut Option<Instant>,
) -> redis::RedisResult<()> {
    let mine = fingerprint(&state.config);
    let ttl = (period * 5 / 2).as_millis() as u64;
    let before: Option<String> = tokio::time::timeout(
        state.config.timeout,
        redis::cmd("SET")
            .arg(&state.keys.layout)
            .arg(&mine)
            .arg("PX")
            .arg(ttl.max(1))
            .arg("GET")
            .query_async(conn),
    )
    .await
    .map_err(|_| timed_out())??;
    if let Some(other) = before.filter(|other| *other != mine)
        && told.is_none_or(|at| at.elapsed() >= TELL_EVERY)
    {
        *told = Some(Instant::now());
        tracing::error!(
            this = %mine,
            other = %other,
            "bus: another process uses other partitions or shards; events between them are lost (set the same bus.url and bus.partitions everywhere)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::Partitions;

    #[test]
    fn the_same_shards_written_otherwise_are_one_layout() {
        let config = |url: &str, partitions: u16| BusConfig {
            url: url.into(),
            partitions: Partitions::new(partitions).expect("valid"),
            ..BusConfig::default()
        };
        let a = fingerprint(&config("redis://a:6379,redis://:pw@b/0", 8));
        assert_eq!(a, fingerprint(&config("redis://b, redis://a:6379/", 8)));
        assert_ne!(a, fingerprint(&config("redis://a:6379,redis://b", 4)));
        assert_ne!(a, fingerprint(&config("redis://a:6379", 8)));
    }
}
