//! `bus`: no server, no HTTP: what the bus itself costs, in process.
//!
//! One registered client receives every event (1 KiB, to everyone).
//!
//! - throughput: `--events` sends as fast as the bus takes them (a full
//!   queue is waited out), until the client has them all; events/s, for
//!   the in-process bus (the floor) and for the Redis bus at `--redis`
//!   (each process reading its own clients' channels, and reading the
//!   whole stream);
//! - latency: `--rate` sends per second for `--duration` seconds; send →
//!   queued for the client, p50/p99/max, for both;
//! - Redis cost: commands, and bytes in and out of Redis, per event
//!   (Redis's own `INFO` counters around the throughput run; the Redis
//!   should be otherwise idle).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sse_notify::sse::{
    Bus, BusConfig, Event, EventError, Follow, Identity, Registry, SessionId, SseConfig, Target,
    UserId,
};

use crate::Args;
use crate::http::now_micros;
use crate::streams::latency_summary;

pub async fn bus(a: &Args) -> Result<serde_json::Value, String> {
    let mut out = json!({ "scenario": "bus", "events": a.events, "rate": a.rate });
    // `redis`: each process reads its own clients' channels (the wide one
    // here: the client receives broadcasts); `redis-all`: the whole stream
    // (`bus.follow = all`), the earlier read, in the same run.
    let runs = [
        ("local", String::new(), Follow::Own),
        ("redis", a.redis.clone(), Follow::Own),
        ("redis-all", a.redis.clone(), Follow::All),
    ];
    for (name, url, follow) in runs {
        let config = BusConfig {
            url,
            follow,
            prefix: format!("bench-{}", uuid::Uuid::new_v4().simple()),
            queue_max: 10_000,
            ..BusConfig::default()
        };
        let before = redis_counters(a, name).await?;
        let throughput = run(&config, Mode::Throughput(a.events)).await?;
        let after = redis_counters(a, name).await?;
        let latency = run(&config, Mode::Rate(a.rate, a.duration)).await?;
        out[name] = json!({ "throughput": throughput, "latency": latency });
        if let (Some(before), Some(after)) = (before, after) {
            let per = |key: &str| {
                (after[key].as_f64().unwrap_or(0.0) - before[key].as_f64().unwrap_or(0.0))
                    / a.events as f64
            };
            out[name]["redis_per_event"] = json!({
                "commands": per("commands"),
                "bytes_in": per("bytes_in"),
                "bytes_out": per("bytes_out"),
            });
        }
        if name.starts_with("redis") {
            drop_keys(a, &config.prefix).await?;
        }
    }
    Ok(out)
}

enum Mode {
    Throughput(usize),
    Rate(u32, u64),
}

async fn run(config: &BusConfig, mode: Mode) -> Result<serde_json::Value, String> {
    let sse = SseConfig {
        queue_len: 1 << 16,
        ..SseConfig::default()
    };
    let registry = Arc::new(Registry::new(sse));
    let bus = Bus::start(registry.clone(), config).map_err(|e| e.to_string())?;
    // Give the Redis bus its connections before measuring.
    let ready = Instant::now() + Duration::from_secs(10);
    while !bus.status().connected {
        if Instant::now() > ready {
            return Err("the Redis bus did not connect within 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let identity = Identity {
        user: UserId::new("bench"),
        username: "bench".into(),
        session: SessionId::new("bench"),
        tags: Vec::new(),
        since: None,
    };
    let mut client = registry
        .register(&identity, Vec::new())
        .map_err(|e| e.to_string())?;
    let (total, pace) = match mode {
        Mode::Throughput(n) => (n, None),
        Mode::Rate(rate, seconds) => (
            rate as usize * seconds as usize,
            Some(Duration::from_secs_f64(1.0 / rate.max(1) as f64)),
        ),
    };
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(total);
            while latencies.len() < total && !done.load(Ordering::Relaxed) {
                match client.try_next() {
                    Some(frame) => latencies.push(latency_of(&frame)),
                    None => tokio::task::yield_now().await,
                }
            }
            latencies
        })
    };
    let pad = "x".repeat(1000);
    let started = Instant::now();
    let mut tick = pace.map(tokio::time::interval);
    for _ in 0..total {
        if let Some(tick) = tick.as_mut() {
            tick.tick().await;
        }
        let event = Event::new("bench", &json!({ "t": now_micros(), "pad": pad }))
            .map_err(|e| e.to_string())?;
        loop {
            match bus.publish(&Target::all(), &event, None) {
                Ok(_) => break,
                Err(EventError::BusBusy { .. }) => {
                    tokio::time::sleep(Duration::from_micros(200)).await
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    let waited = tokio::time::timeout(Duration::from_secs(60), reader).await;
    done.store(true, Ordering::Relaxed);
    let mut latencies = waited
        .map_err(|_| "the client did not get every event within 60 s".to_string())?
        .map_err(|e| e.to_string())?;
    let elapsed = started.elapsed().as_secs_f64();
    bus.stop();
    latencies.sort_unstable();
    Ok(match mode {
        Mode::Throughput(n) => json!({
            "received": latencies.len(),
            "seconds": elapsed,
            "events_per_second": n as f64 / elapsed,
        }),
        Mode::Rate(..) => json!({ "latency_ms": latency_summary(&latencies) }),
    })
}

/// Microseconds from the send time in the frame's data (`{"t":…`) to now.
fn latency_of(frame: &[u8]) -> u32 {
    let now = now_micros();
    let text = String::from_utf8_lossy(frame);
    text.split_once("\"t\":")
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(u32::MAX, |sent| now.saturating_sub(sent) as u32)
}

/// Redis's command count and network bytes (only for the Redis run).
async fn redis_counters(a: &Args, name: &str) -> Result<Option<serde_json::Value>, String> {
    if !name.starts_with("redis") {
        return Ok(None);
    }
    let client = redis::Client::open(a.redis.as_str()).map_err(|e| e.to_string())?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| format!("{}: {e}", a.redis))?;
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    let field = |key: &str| info_field(&info, key);
    Ok(Some(json!({
        "commands": field("total_commands_processed"),
        "bytes_in": field("total_net_input_bytes"),
        "bytes_out": field("total_net_output_bytes"),
    })))
}

async fn drop_keys(a: &Args, prefix: &str) -> Result<(), String> {
    let client = redis::Client::open(a.redis.as_str()).map_err(|e| e.to_string())?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{prefix}}}:*"))
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A number from Redis's `INFO` text (`key:value` lines); 0 if absent.
pub(crate) fn info_field(info: &str, key: &str) -> f64 {
    info.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}
