//! `fanout`: `--clients` streams held on each server of `--addrs` (one
//! server, or several sharing a Redis bus), by holder processes, and a
//! 1 KiB broadcast to all of them at `--rate` for `--duration` seconds,
//! sent to the first server. Delivery latency (send time is in the
//! payload) over every stream of every server, and each server's RSS
//! before and after the streams opened (`--pids`, in the order of
//! `--addrs`).
//!
//! The holders record what their streams receive and, when released,
//! write their latencies to a file (`--report`), which this process reads.

use std::net::SocketAddr;
use std::time::Duration;

use crate::holders::Holders;
use crate::http::rss_kib;
use crate::streams::latency_summary;
use crate::{Args, SETTLE, publish};

pub async fn fanout(a: &Args) -> Result<serde_json::Value, String> {
    let servers: Vec<SocketAddr> = if a.addrs.is_empty() {
        vec![a.addr]
    } else {
        a.addrs.clone()
    };
    let total = a.clients * servers.len();
    // Sessions signed in on the first server (the database is shared),
    // the admin's first: `with_sessions` then lets the sign-ins' memory
    // go before RSS is read.
    let admin = a.admin().await?;
    let a = &a.with_sessions(total).await?;
    let rss = |i: usize| a.pids.get(i).copied().and_then(rss_kib);
    let before: Vec<Option<u64>> = (0..servers.len()).map(rss).collect();
    let dir = std::env::temp_dir().join(format!("loadgen-fanout-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut holders = Vec::new();
    for (i, addr) in servers.iter().enumerate() {
        let mut on = a.clone();
        on.addr = *addr;
        on.report = Some(dir.join(format!("server{i}")));
        let processes = a.processes.max(1);
        holders
            .push(Holders::spawn_scenario(&on, "hold", i * a.clients, a.clients, processes).await?);
    }
    tokio::time::sleep(SETTLE).await;
    let after: Vec<Option<u64>> = (0..servers.len()).map(rss).collect();

    let events = a.rate as u64 * a.duration;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / a.rate.max(1) as f64));
    for _ in 0..events {
        tick.tick().await;
        publish(a, admin.as_deref()).await?;
    }
    // Holders cannot be asked how far they are: leave time to deliver.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for h in holders {
        h.release();
    }
    let mut latencies = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        let part: Vec<u32> = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        latencies.extend(part);
    }
    let _ = std::fs::remove_dir_all(&dir);
    latencies.sort_unstable();
    let per_stream: Vec<Option<f64>> = before
        .iter()
        .zip(&after)
        .map(|(b, f)| match (b, f) {
            (Some(b), Some(f)) => Some((*f as f64 - *b as f64) * 1024.0 / a.clients as f64),
            _ => None,
        })
        .collect();
    Ok(serde_json::json!({
        "servers": servers.len(),
        "streams": total,
        "events": events,
        "expected_deliveries": events * total as u64,
        "delivered": latencies.len(),
        "latency_ms": latency_summary(&latencies),
        "rss_before_kib": before,
        "rss_after_kib": after,
        "bytes_per_stream": per_stream,
    }))
}
