//! `storm`: N clients drop at once and come back at once, as after a
//! network outage or a proxy restart, while `--events` events (default
//! 1 000) were sent during their absence, each to one account's
//! connections (round robin). Measured twice, on the same server: with
//! `Last-Event-ID` (every client replays what it missed) and without (the
//! same storm, nothing replayed). Reported: time until every client is
//! connected and has what it missed, the server's CPU time over the
//! reconnect, and its peak RSS during it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use crate::Args;
use crate::http::{now_micros, request};
use crate::streams::{Sink, StreamRequest, open_many};

pub async fn storm(a: &Args) -> Result<serde_json::Value, String> {
    if !a.ours() {
        return Err("storm measures replay, which only ours has".into());
    }
    let pid = a.pid.ok_or("storm needs --pid")?;
    let req = a.stream_request(a.clients).await?;
    let accounts = req.cookies.len();
    let sender = req.cookies.first().cloned().ok_or("no account")?;
    let events = a.events;
    let admin = a.admin().await?;

    let mut out = serde_json::json!({ "missed_events": events, "accounts": accounts });

    // What a full history costs: RSS before and after 10 000 sends of
    // 1 KiB (the default `history_len`) with no one connected.
    let headers = format!("Content-Type: application/json\r\nCookie: {sender}\r\n");
    // After the sign-ins' password hashing memory is given back (see
    // BENCHMARKS.md, Method).
    tokio::time::sleep(Duration::from_secs(12)).await;
    let before = crate::http::rss_kib(pid);
    let pad = "x".repeat(1000);
    for n in 0..10_000 {
        let body = format!(r#"{{"user":"bench0","message":"fill {n} {pad}"}}"#);
        let (status, text) = request(a.addr, "POST", "/api/sse/test", &headers, &body).await?;
        if status != 200 {
            return Err(format!("send: {status}: {text:.200}"));
        }
    }
    let after = crate::http::rss_kib(pid);
    if let (Some(before), Some(after)) = (before, after) {
        out["history_full"] = serde_json::json!({
            "events": 10_000,
            "rss_before_kib": before,
            "rss_after_kib": after,
        });
    }
    for replay in [true, false] {
        let sink = Arc::new(Sink::default());
        let (conns, _) = open_many(req.clone(), 0, a.clients, a.concurrency, &sink).await?;
        let start = start_id(&req).await?;
        // Everyone drops at once.
        drop(conns);
        wait_until_gone(a, admin.as_deref()).await?;
        for n in 0..events {
            let body = format!(
                r#"{{"user":"bench{}","message":"t={};storm {n}"}}"#,
                n % accounts,
                now_micros()
            );
            let (status, text) = request(a.addr, "POST", "/api/sse/test", &headers, &body).await?;
            if status != 200 {
                return Err(format!("send: {status}: {text:.200}"));
            }
        }
        // Client n connects as account n % accounts (StreamRequest);
        // account k was sent the events n with n % accounts == k.
        let per_account: Vec<u64> = (0..accounts)
            .map(|k| (events / accounts + usize::from(k < events % accounts)) as u64)
            .collect();
        let expected: u64 = if replay {
            (0..a.clients).map(|n| per_account[n % accounts]).sum()
        } else {
            0
        };
        let resumed = Arc::new(StreamRequest {
            addr: req.addr,
            path: req.path,
            cookies: req.cookies.clone(),
            reuse: false,
            last_event_id: replay.then(|| start.clone()),
        });
        reset_peak_rss(pid);
        let cpu_before = cpu_ticks(pid);
        let sink = Arc::new(Sink::default());
        let began = Instant::now();
        // Everyone comes back at once (as many in flight as the generator
        // allows).
        let (conns, connected) = open_many(resumed, 0, a.clients, a.concurrency, &sink).await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while sink.received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let live_again = began.elapsed();
        let cpu = cpu_ticks(pid).zip(cpu_before).map(|(a, b)| a - b);
        let received = sink.received.load(Ordering::Relaxed);
        let peak = peak_rss_kib(pid);
        drop(conns);
        wait_until_gone(a, admin.as_deref()).await?;
        out[if replay {
            "with_replay"
        } else {
            "without_replay"
        }] = serde_json::json!({
            "all_connected_seconds": connected.as_secs_f64(),
            "all_live_seconds": live_again.as_secs_f64(),
            "replayed_expected": expected,
            "replayed_received": received,
            "server_cpu_seconds": cpu.map(|t| t as f64 / 100.0),
            "peak_rss_kib": peak,
        });
    }
    Ok(out)
}

/// `restart`: every client comes back after a restart of the server (one
/// process, no Redis: its history is gone) holding 100 unread stored
/// notifications (`--events` over the accounts) that it had already
/// received. Simulated on one running server: each client sends back the
/// id it last saw with another history's epoch, which is what a restarted
/// server sees. Measured twice: with the inbox position on the id (the
/// stored part resumes from it: nothing missed, nothing sent again) and
/// without (an id from before inbox positions: `sse-reset`, then the whole
/// unread backlog, which repeats every notification). Reported: time until
/// every stream has its opening (and, without the position, its backlog),
/// notifications received, server CPU and peak RSS.
pub async fn restart(a: &Args) -> Result<serde_json::Value, String> {
    if !a.ours() {
        return Err("restart measures the inbox, which only ours has".into());
    }
    let pid = a.pid.ok_or("restart needs --pid")?;
    let req = a.stream_request(a.clients).await?;
    let accounts = req.cookies.len();
    let sender = req.cookies.first().cloned().ok_or("no account")?;
    let admin = a.admin().await?;
    let headers = format!("Content-Type: application/json\r\nCookie: {sender}\r\n");
    for n in 0..a.events {
        let body = format!(
            r#"{{"user":"bench{}","message":"t={};unread {n}"}}"#,
            n % accounts,
            now_micros()
        );
        let (status, text) = request(a.addr, "POST", "/api/sse/test", &headers, &body).await?;
        if status != 200 {
            return Err(format!("send: {status}: {text:.200}"));
        }
    }
    // Where a client that received all of them stands.
    let seen = start_id(&req).await?;
    let (event, position) = seen
        .split_once('.')
        .ok_or_else(|| format!("{seen:?} carries no inbox position (no inbox?)"))?;
    // The same place in a history that is gone.
    let gone = match event.split_once('-') {
        Some((epoch, rest)) => {
            let other = if epoch.starts_with('0') { "1" } else { "0" };
            format!("{other}{}-{rest}", &epoch[1..])
        }
        None => return Err(format!("{seen:?} is not an id of ours")),
    };
    let unread_each = (a.events / accounts) as u64;
    let mut out = serde_json::json!({
        "accounts": accounts,
        "unread_per_client": unread_each,
    });
    for with_position in [true, false] {
        let last = if with_position {
            format!("{gone}.{position}")
        } else {
            gone.clone()
        };
        let resumed = Arc::new(StreamRequest {
            addr: req.addr,
            path: req.path,
            cookies: req.cookies.clone(),
            reuse: false,
            last_event_id: Some(last),
        });
        let expected = if with_position {
            0
        } else {
            unread_each * a.clients as u64
        };
        reset_peak_rss(pid);
        let cpu_before = cpu_ticks(pid);
        let sink = Arc::new(Sink::default());
        let began = Instant::now();
        let (conns, connected) = open_many(resumed, 0, a.clients, a.concurrency, &sink).await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while (sink.openings.load(Ordering::Relaxed) < a.clients as u64
            || sink.received.load(Ordering::Relaxed) < expected)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let live_again = began.elapsed();
        let cpu = cpu_ticks(pid).zip(cpu_before).map(|(a, b)| a - b);
        // Anything sent again after the opening would still be arriving.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let received = sink.received.load(Ordering::Relaxed);
        let openings = sink.openings.load(Ordering::Relaxed);
        let peak = peak_rss_kib(pid);
        drop(conns);
        wait_until_gone(a, admin.as_deref()).await?;
        out[if with_position {
            "with_position"
        } else {
            "without_position"
        }] = serde_json::json!({
            "all_connected_seconds": connected.as_secs_f64(),
            "all_live_seconds": live_again.as_secs_f64(),
            "openings": openings,
            "notifications_received": received,
            "notifications_expected": expected,
            "server_cpu_seconds": cpu.map(|t| t as f64 / 100.0),
            "peak_rss_kib": peak,
        });
    }
    Ok(out)
}

/// The id the next stream starts after (its `connected` event's id),
/// read from the raw response (head and first bytes of the body).
async fn start_id(req: &StreamRequest) -> Result<String, String> {
    use tokio::io::AsyncWriteExt;
    let mut stream = crate::http::connect_from(req.addr, 0)
        .await
        .map_err(|e| e.to_string())?;
    stream
        .write_all(req.bytes(0).as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut text = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .map_err(|_| "no connected event".to_string())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the stream ended before its connected event".into());
        }
        text.extend_from_slice(&buf[..n]);
        let seen = String::from_utf8_lossy(&text).to_string();
        if let Some(line) = seen.lines().find_map(|l| l.strip_prefix("id: "))
            && seen.contains("event: connected")
        {
            return Ok(line.trim().to_string());
        }
    }
}

/// Waits until the server counts no open stream (it noticed the drops).
async fn wait_until_gone(a: &Args, admin: Option<&str>) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let open = crate::http::server_count(a.addr, crate::Target::Ours, admin).await?;
        if open == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{open} streams still open a minute after the drop"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// utime + stime of the process, in clock ticks (100 per second here).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resets the kernel's peak-RSS mark of the process (`VmHWM`).
fn reset_peak_rss(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
