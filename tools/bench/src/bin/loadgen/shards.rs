//! `shards`: no server, no HTTP: how fast one process's Redis bus
//! appends (publish throughput) as its partitions spread over 1, 2 and 4
//! Redis shards (`--shards`), each a `redis-server` this scenario starts
//! on a free port (ports picked so that every shard holds the same number
//! of the `--partitions` partitions).
//!
//! Per shard count: `--events` sends to one user each (1 000 users, round
//! robin: each lands in its user's partition), as fast as the bus takes
//! them, timed until every one is in its partition's stream (Redis's own
//! `XLEN`s); then a tenth as many sends to everyone (one append per
//! partition each). Beside the rate: CPU seconds per event of each
//! `redis-server` (`INFO cpu`) and of this process (`/proc/self/stat`),
//! so that what one core per shard would give can be worked out on a
//! machine with fewer cores than shards. With `--shard-cpu f`, each
//! `redis-server` runs in a cgroup (v1, `/sys/fs/cgroup/cpu`; root) capped
//! at `f` of one core: each shard then has a fixed CPU budget, as each
//! would with a core of its own, scaled down to fit this machine.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sse_notify::sse::partition::{Partitions, shard_of};
use sse_notify::sse::{Bus, BusConfig, Event, EventError, Registry, SseConfig, Target, UserId};

use crate::Args;
use crate::bus::info_field;

/// Users the per-user sends go to.
const USERS: usize = 1000;

pub async fn shards(a: &Args) -> Result<serde_json::Value, String> {
    let partitions = Partitions::new(a.partitions).ok_or("--partitions: 1 to 256")?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut runs = Vec::new();
    for &count in &a.shards {
        let shards = Shards::start(count, partitions, a.shard_cpu).await?;
        let users = run(&shards, partitions, a.events, Kind::Users).await?;
        let everyone = run(&shards, partitions, (a.events / 10).max(1), Kind::Everyone).await?;
        runs.push(json!({ "shards": count, "users": users, "everyone": everyone }));
    }
    Ok(json!({
        "scenario": "shards",
        "events": a.events,
        "shard_cpu": a.shard_cpu,
        "partitions": partitions.count(),
        "cores": cores,
        "runs": runs,
    }))
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Users,
    Everyone,
}

/// Local `redis-server`s (each in its CPU cgroup, if bounded), stopped
/// on drop.
struct Shards {
    ports: Vec<u16>,
    children: Vec<Child>,
    cgroups: Vec<std::path::PathBuf>,
}

impl Shards {
    async fn start(count: usize, partitions: Partitions, cpu: f64) -> Result<Self, String> {
        let ports = even_ports(count, partitions)?;
        let mut shards = Shards {
            ports: ports.clone(),
            children: Vec::new(),
            cgroups: Vec::new(),
        };
        for port in &ports {
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("redis-server: {e}"))?;
            let pid = child.id();
            shards.children.push(child);
            if cpu > 0.0 {
                let dir = std::path::PathBuf::from(format!("/sys/fs/cgroup/cpu/sse-bench-{port}"));
                let cap = |e: std::io::Error| {
                    format!("--shard-cpu needs cgroup v1 at {}: {e}", dir.display())
                };
                std::fs::create_dir_all(&dir).map_err(cap)?;
                shards.cgroups.push(dir.clone());
                std::fs::write(dir.join("cpu.cfs_period_us"), "100000").map_err(cap)?;
                let quota = ((cpu * 100_000.0) as u64).max(1000);
                std::fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string()).map_err(cap)?;
                std::fs::write(dir.join("cgroup.procs"), pid.to_string()).map_err(cap)?;
            }
        }
        for url in shards.urls() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while connect(&url).await.is_err() {
                if Instant::now() > deadline {
                    return Err(format!("{url} did not start"));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(shards)
    }

    fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect()
    }
}

impl Drop for Shards {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for dir in &self.cgroups {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Free ports for `count` shards on which the partitions fall evenly.
fn even_ports(count: usize, partitions: Partitions) -> Result<Vec<u16>, String> {
    for _ in 0..10_000 {
        let ports: Vec<u16> = (0..count).map(|_| free_port()).collect::<Result<_, _>>()?;
        let urls: Vec<String> = ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect();
        let refs: Vec<&str> = urls.iter().map(String::as_str).collect();
        let mut on = vec![0usize; count];
        for partition in 0..partitions.count() {
            let url = shard_of(&refs, partition);
            if let Some(i) = refs.iter().position(|u| *u == url) {
                on[i] += 1;
            }
        }
        if on.iter().all(|n| *n == partitions.count() / count) {
            return Ok(ports);
        }
    }
    Err(format!(
        "no ports put {} partitions evenly on {count} shards",
        partitions.count()
    ))
}

fn free_port() -> Result<u16, String> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(probe.local_addr().map_err(|e| e.to_string())?.port())
}

async fn connect(url: &str) -> Result<redis::aio::MultiplexedConnection, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())
}

async fn run(
    shards: &Shards,
    partitions: Partitions,
    events: usize,
    kind: Kind,
) -> Result<serde_json::Value, String> {
    let urls = shards.urls();
    let appends = match kind {
        Kind::Users => events,
        Kind::Everyone => events * partitions.count(),
    };
    let config = BusConfig {
        url: urls.join(","),
        partitions,
        prefix: format!("bench-{}", uuid::Uuid::new_v4().simple()),
        // Nothing trimmed: the streams' lengths count the appends.
        history_len: appends + 1000,
        queue_max: 10_000,
        ..BusConfig::default()
    };
    let registry = Arc::new(Registry::with_partitions(SseConfig::default(), partitions));
    let bus = Bus::start(registry, &config).map_err(|e| e.to_string())?;
    let ready = Instant::now() + Duration::from_secs(10);
    while !bus.status().connected {
        if Instant::now() > ready {
            return Err("the Redis bus did not connect within 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut conns = Vec::new();
    for url in &urls {
        conns.push(connect(url).await?);
    }
    let redis_before = redis_cpu(&mut conns).await?;
    let own_before = own_cpu();
    let pad = "x".repeat(1000);
    let users: Vec<Target> = (0..USERS)
        .map(|n| Target::user(UserId::new(format!("user-{n}"))))
        .collect();
    let everyone = Target::all();
    let started = Instant::now();
    for n in 0..events {
        let target = match kind {
            Kind::Users => &users[n % USERS],
            Kind::Everyone => &everyone,
        };
        let event =
            Event::new("bench", &json!({ "n": n, "pad": pad })).map_err(|e| e.to_string())?;
        loop {
            match bus.publish(target, &event, None) {
                Ok(_) => break,
                Err(EventError::BusBusy { .. }) => {
                    tokio::time::sleep(Duration::from_micros(200)).await
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    // Every append in its stream.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let mut total = 0u64;
        for partition in 0..partitions.count() {
            let refs: Vec<&str> = urls.iter().map(String::as_str).collect();
            let url = shard_of(&refs, partition);
            let index = refs.iter().position(|u| *u == url).unwrap_or(0);
            let len: u64 = redis::cmd("XLEN")
                .arg(format!("{{{}:{partition}}}:stream", config.prefix))
                .query_async(&mut conns[index])
                .await
                .map_err(|e| e.to_string())?;
            total += len;
        }
        if total >= appends as u64 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("{total} of {appends} appends after 300 s"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let own = own_cpu() - own_before;
    let redis_after = redis_cpu(&mut conns).await?;
    bus.stop();
    let per_shard: Vec<f64> = redis_after
        .iter()
        .zip(&redis_before)
        .map(|(after, before)| (after - before) * 1e6 / events as f64)
        .collect();
    Ok(json!({
        "sends": events,
        "appends": appends,
        "seconds": seconds,
        "sends_per_second": events as f64 / seconds,
        "appends_per_second": appends as f64 / seconds,
        "redis_cpu_us_per_send_by_shard": per_shard,
        "redis_cpu_us_per_send": per_shard.iter().sum::<f64>(),
        "publisher_cpu_us_per_send": own * 1e6 / events as f64,
    }))
}

/// Each shard's CPU seconds so far (user + system).
async fn redis_cpu(conns: &mut [redis::aio::MultiplexedConnection]) -> Result<Vec<f64>, String> {
    let mut out = Vec::new();
    for conn in conns {
        let info: String = redis::cmd("INFO")
            .arg("cpu")
            .query_async(conn)
            .await
            .map_err(|e| e.to_string())?;
        out.push(info_field(&info, "used_cpu_user") + info_field(&info, "used_cpu_sys"));
    }
    Ok(out)
}

/// This process's CPU seconds so far (user + system; clock ticks of
/// 1/100 s, Linux's).
fn own_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
