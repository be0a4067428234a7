//! Cluster-wide figures: each process writes its own to Redis every
//! `bus.report_interval`, with an expiry of two and a half intervals, and
//! reads the others'. A process that stops reporting (killed, cut off)
//! drops out of the totals within three intervals.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use redis::Value;
use serde::{Deserialize, Serialize};

use super::BusState;
use crate::clock::unix_millis_now;
use crate::registry::{InstanceStats, Stats};
use crate::target::UserId;

/// Users listed per report, at most (those with the most connections):
/// the report stays small however many users a process serves.
const USERS_PER_REPORT: usize = 200;

/// Users with at least this many connections on a process are reported
/// by id, for the cluster-wide per-user limit (a user with one connection
/// per process is the common case, and not near any sensible limit).
const BUSY_FROM: usize = 2;

/// Busy users reported per process, at most.
const BUSY_PER_REPORT: usize = 1000;

/// What one process reports.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeReport {
    pub instance: String,
    /// Unix milliseconds.
    pub at: u64,
    pub clients: usize,
    /// Username → open connections, for the busiest users.
    pub users: BTreeMap<String, usize>,
    pub average_connection_seconds: f64,
    pub events_sent: u64,
    pub events_published: u64,
    pub last_event_at: Option<u64>,
    pub connections_opened: u64,
    pub connections_closed: u64,
    /// User id → open connections, for users with several.
    #[serde(default)]
    pub busy: Vec<(String, usize)>,
}

impl NodeReport {
    fn of(instance: &str, stats: Stats, busy: Vec<(UserId, usize)>) -> Self {
        let mut users: Vec<(String, usize)> = stats.clients_per_user.into_iter().collect();
        if users.len() > USERS_PER_REPORT {
            users.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            users.truncate(USERS_PER_REPORT);
        }
        NodeReport {
            instance: instance.to_string(),
            at: unix_millis_now(),
            clients: stats.total_clients,
            users: users.into_iter().collect(),
            average_connection_seconds: stats.average_connection_seconds,
            events_sent: stats.events_sent,
            events_published: stats.events_published,
            last_event_at: stats.last_event_at,
            connections_opened: stats.connections_opened,
            connections_closed: stats.connections_closed,
            busy: busy
                .into_iter()
                .map(|(user, n)| (user.as_str().to_string(), n))
                .collect(),
        }
    }
}

pub(super) async fn run(state: Arc<BusState>) {
    let period = state.config.report_interval.max(Duration::from_millis(10));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn = None;
    let mut mismatch_told = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = state.stopped() => break,
        }
        if conn.is_none() {
            conn = state.connect_shared().await.ok();
        }
        let Some(c) = conn.as_mut() else {
            continue;
        };
        match report(&state, c, period).await {
            Ok(others) => {
                let mut remote: HashMap<UserId, usize> = HashMap::new();
                for report in &others {
                    for (user, n) in &report.busy {
                        *remote.entry(UserId::new(user.as_str())).or_insert(0) += n;
                    }
                }
                state.registry.set_remote_users(remote);
                *state.others.lock().unwrap_or_else(PoisonError::into_inner) = others;
                let exchanged = if state.registry.partitions().count() > 1 {
                    let exchanged = super::ended::exchange(&state, c).await;
                    if exchanged.is_ok()
                        && let Err(e) =
                            super::layout::check(&state, c, period, &mut mismatch_told).await
                    {
                        // A diagnosis: its failure changes nothing else.
                        tracing::debug!(error = %e, "bus: layout not checked");
                    }
                    exchanged
                } else {
                    Ok(())
                };
                if let Err(e) = &exchanged {
                    tracing::debug!(error = %e, "bus: ended sessions not exchanged");
                    conn = None;
                }
                state.cluster_up.store(exchanged.is_ok(), Ordering::Relaxed);
            }
            Err(e) => {
                tracing::debug!(error = %e, "bus: cluster report failed");
                state
                    .others
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clear();
                state.registry.set_remote_users(HashMap::new());
                state.cluster_up.store(false, Ordering::Relaxed);
                conn = None;
            }
        }
    }
    // Leave the totals at once rather than when the report expires.
    if let Some(c) = conn.as_mut() {
        let key = format!("{}{}", state.keys.node_prefix, state.instance);
        let _ = tokio::time::timeout(
            state.config.timeout,
            redis::pipe()
                .cmd("DEL")
                .arg(&key)
                .cmd("ZREM")
                .arg(&state.keys.nodes)
                .arg(&state.instance)
                .query_async::<Value>(c),
        )
        .await;
    }
}

/// Writes this process's report; returns the other live processes'.
async fn report(
    state: &BusState,
    conn: &mut redis::aio::MultiplexedConnection,
    period: Duration,
) -> redis::RedisResult<Vec<NodeReport>> {
    let ttl = (period * 5 / 2).as_millis() as u64;
    let now = unix_millis_now();
    let busy = state.registry.busy_users(BUSY_FROM, BUSY_PER_REPORT);
    let mine = NodeReport::of(&state.instance, state.registry.stats(), busy);
    let json = serde_json::to_string(&mine).unwrap_or_default();
    let key = format!("{}{}", state.keys.node_prefix, state.instance);
    let (members,): (Vec<String>,) = redis::pipe()
        .cmd("SET")
        .arg(&key)
        .arg(json)
        .arg("PX")
        .arg(ttl)
        .ignore()
        .cmd("ZADD")
        .arg(&state.keys.nodes)
        .arg(now + ttl)
        .arg(&state.instance)
        .ignore()
        .cmd("ZREMRANGEBYSCORE")
        .arg(&state.keys.nodes)
        .arg("-inf")
        .arg(now)
        .ignore()
        .cmd("ZRANGE")
        .arg(&state.keys.nodes)
        .arg(0)
        .arg(-1)
        .query_async(conn)
        .await?;
    let others: Vec<String> = members
        .into_iter()
        .filter(|m| *m != state.instance)
        .map(|m| format!("{}{m}", state.keys.node_prefix))
        .collect();
    if others.is_empty() {
        return Ok(Vec::new());
    }
    let reports: Vec<Option<String>> = redis::cmd("MGET").arg(&others).query_async(conn).await?;
    Ok(reports
        .into_iter()
        .flatten()
        .filter_map(|json| serde_json::from_str(&json).ok())
        .collect())
}

/// This process's current figures plus the others' latest reports.
pub(super) fn merge(
    instance: &str,
    local: Stats,
    others: &[NodeReport],
    partitioned: bool,
) -> Stats {
    let mut total = local;
    let mut instances = vec![InstanceStats {
        instance: instance.to_string(),
        clients: total.total_clients,
        events_sent: total.events_sent,
        reported_at: unix_millis_now(),
    }];
    let mut seconds = total.average_connection_seconds * total.total_clients as f64;
    for other in others {
        total.total_clients += other.clients;
        for (user, n) in &other.users {
            *total.clients_per_user.entry(user.clone()).or_insert(0) += n;
        }
        seconds += other.average_connection_seconds * other.clients as f64;
        total.events_sent += other.events_sent;
        // One partition: each process counts every event it reads (the
        // one stream's, all of them with `bus.follow = all`). Several:
        // each counts the sends it published.
        total.events_published = if partitioned {
            total.events_published + other.events_published
        } else {
            total.events_published.max(other.events_published)
        };
        total.last_event_at = total.last_event_at.max(other.last_event_at);
        total.connections_opened += other.connections_opened;
        total.connections_closed += other.connections_closed;
        instances.push(InstanceStats {
            instance: other.instance.clone(),
            clients: other.clients,
            events_sent: other.events_sent,
            reported_at: other.at,
        });
    }
    total.average_connection_seconds = if total.total_clients == 0 {
        0.0
    } else {
        seconds / total.total_clients as f64
    };
    instances[1..].sort_by(|a, b| a.instance.cmp(&b.instance));
    total.instances = instances;
    total
}
