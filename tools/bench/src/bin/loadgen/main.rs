//! Load generator for `make bench` (see BENCHMARKS.md).
//!
//! Opens many SSE connections to a running server — ours (`--target ours`,
//! authenticated through the real sign-up endpoint), the naive baseline
//! (`--target baseline`) or nginx with Nchan (`--target nchan`) — spreading
//! source addresses over 127.0.0.x, and measures one scenario:
//!
//! - `idle`: hold N connections (over `--processes` holder processes);
//!   server RSS before/after, bytes per connection;
//! - `broadcast`: 1 KiB events to N clients at a fixed rate; delivery
//!   latency percentiles (send time is in the payload), delivered events/s,
//!   server RSS per stream idle and after the broadcasts;
//! - `saturate`: 1 KiB broadcasts to N clients as fast as `--publishers`
//!   concurrent publishers can send them; delivered events/s and losses;
//! - `targeted`: N idle clients, plus one probe user that is sent
//!   `--rate` events/s through the per-user send; the probe's latency;
//! - `churn`: `--cycles` connects and disconnects; the server's count of
//!   open streams afterwards (leaks) and its RSS against the warmed-up one;
//! - `connect`: connections opened per second;
//! - `soak`: `--duration` seconds of mixed traffic abandoned mid-response
//!   (pages, streams, sends); RSS and open streams before and after;
//! - `storm`: N clients drop at once and reconnect at once, with and
//!   without `Last-Event-ID`, after `--events` sends while they were away;
//!   time until all are live again, server CPU time and peak RSS;
//! - `inbox`: no server: persistent sends in process against a fresh
//!   database (`--database`); group commit, one commit per send, live only,
//!   and the store step's latency at `--rate` (see `inbox.rs`);
//! - `bus`: no server: sends through the in-process bus and the Redis bus
//!   (`--redis`), throughput, latency and Redis's cost per event (see
//!   `bus.rs`);
//! - `shards`: no server: one process's publish throughput through the
//!   Redis bus with its partitions on 1, 2 and 4 `redis-server`s it
//!   starts, and the CPU each costs (see `shards.rs`);
//! - `fanout`: `--clients` streams on each of `--addrs` (servers sharing a
//!   Redis bus), a 1 KiB broadcast to all; latency and RSS per stream
//!   (see `cluster.rs`);
//! - `floor`: no server: plain `write()`s of 1 KiB to N loopback sockets,
//!   the kernel's own cost of a broadcast;
//! - `hold`, `hold-raw`: internal, a holder process (see `holders.rs`).
//!
//! Output: one JSON object per run on stdout.

mod args;
mod bus;
mod cluster;
mod floor;
mod holders;
mod http;
mod inbox;
mod publish;
mod shards;
mod soak;
mod storm;
mod streams;
mod targeted;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use args::args;
pub use args::{Args, Target};
use holders::Holders;
use http::{now_micros, request, rss_kib, server_count, session};
use streams::{Sink, StreamRequest, connect_stream, latency_summary, open_many};

impl Args {
    pub(crate) fn ours(&self) -> bool {
        self.target == Target::Ours
    }

    /// The stream request, signing in the accounts it needs (ours).
    async fn stream_request(&self, count: usize) -> Result<Arc<StreamRequest>, String> {
        let mut cookies = self.cookies.clone();
        if self.ours() && cookies.is_empty() {
            let first = self.first / self.per_user.max(1);
            for u in 0..count.div_ceil(self.per_user.max(1)) {
                cookies.push(session(self.addr, &format!("bench{}", first + u)).await?);
            }
        }
        Ok(Arc::new(StreamRequest {
            addr: self.addr,
            path: self.target.stream_path(),
            cookies: Arc::new(cookies),
            reuse: self.reuse,
            last_event_id: None,
        }))
    }

    /// A copy that connects with sessions signed in now, one at a time:
    /// each sign-in hashes a password with 19 MiB of server memory, which
    /// must be in the server's RSS before the reference reading, not in
    /// the per-connection figure.
    async fn with_sessions(&self, count: usize) -> Result<Args, String> {
        let mut a = self.clone();
        if self.ours() {
            a.cookies = self.stream_request(count).await?.cookies.to_vec();
            tokio::time::sleep(SETTLE).await;
        }
        Ok(a)
    }

    pub(crate) async fn admin(&self) -> Result<Option<String>, String> {
        if self.ours() {
            Ok(Some(session(self.addr, "benchadmin").await?))
        } else {
            Ok(None)
        }
    }
}

#[tokio::main]
async fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    };
    match run(&a).await {
        // A holder has reported already; its parent stopped listening.
        Ok(_) if a.scenario.starts_with("hold") => {}
        Ok(result) => println!("{result}"),
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(1);
        }
    }
}

async fn run(a: &Args) -> Result<serde_json::Value, String> {
    let mut result = serde_json::json!({
        "target": a.target.name(),
        "scenario": a.scenario,
        "clients": a.clients,
    });
    if let Some(variant) = &a.variant {
        result["variant"] = variant.clone().into();
    }
    let extra = match a.scenario.as_str() {
        "floor" => return floor::floor(a).await,
        "inbox" => return inbox::inbox(a).await,
        "bus" => return bus::bus(a).await,
        "shards" => return shards::shards(a).await,
        "fanout" => cluster::fanout(a).await?,
        "hold" | "hold-raw" => return hold(a).await,
        "idle" => idle(a).await?,
        "connect" => connect(a).await?,
        "broadcast" => broadcast(a).await?,
        "saturate" => saturate(a).await?,
        "targeted" => targeted::targeted(a).await?,
        "publish" => publish::publish(a).await?,
        "churn" => churn(a).await?,
        "soak" => soak::soak(a).await?,
        "storm" => storm::storm(a).await?,
        "restart" => storm::restart(a).await?,
        other => return Err(format!("unknown scenario {other}")),
    };
    if let (Some(into), Some(from)) = (result.as_object_mut(), extra.as_object()) {
        into.extend(from.clone());
    }
    Ok(result)
}

/// A holder process: open, report, hold until stdin closes.
async fn hold(a: &Args) -> Result<serde_json::Value, String> {
    use std::io::Write;
    let started = Instant::now();
    let mut raw = Vec::new();
    let mut conns = Vec::new();
    let mut sink = None;
    if a.scenario == "hold-raw" {
        for n in a.first..a.first + a.clients {
            raw.push(
                http::connect_from(a.addr, n)
                    .await
                    .map_err(|e| format!("connect: {e}"))?,
            );
        }
    } else {
        let received = Arc::new(Sink::default());
        let req = a.stream_request(a.clients).await?;
        conns = open_many(req, a.first, a.clients, a.concurrency, &received)
            .await?
            .0;
        sink = Some(received);
    }
    let opened = raw.len() + conns.len();
    let took = started.elapsed();
    let report = serde_json::json!({"opened": opened, "connect_seconds": took.as_secs_f64()});
    let mut out = std::io::stdout();
    writeln!(out, "{report}")
        .and_then(|()| out.flush())
        .map_err(|e| e.to_string())?;
    tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    drop((conns, raw));
    if let (Some(path), Some(sink)) = (&a.report, &sink) {
        let latencies = std::mem::take(&mut *sink.latencies.lock().await);
        let json = serde_json::to_string(&latencies).map_err(|e| e.to_string())?;
        std::fs::write(path.with_extension(format!("{}.json", a.first)), json)
            .map_err(|e| e.to_string())?;
    }
    Ok(serde_json::json!({"released": true}))
}

async fn idle(a: &Args) -> Result<serde_json::Value, String> {
    let a = &a.with_sessions(a.clients).await?;
    let before = a.pid.and_then(rss_kib);
    let holders = Holders::spawn(a, 0, a.clients, a.processes).await?;
    tokio::time::sleep(Duration::from_secs(a.duration)).await;
    let after = a.pid.and_then(rss_kib);
    let mut out = serde_json::json!({
        "reuse": a.reuse,
        "processes": a.processes,
        "connects_per_second": holders.connects_per_second(),
    });
    if let (Some(before), Some(after)) = (before, after) {
        out["rss_before_kib"] = before.into();
        out["rss_after_kib"] = after.into();
        out["bytes_per_connection"] =
            (after.saturating_sub(before) * 1024 / a.clients.max(1) as u64).into();
    }
    holders.release();
    Ok(out)
}

async fn connect(a: &Args) -> Result<serde_json::Value, String> {
    let sink = Arc::new(Sink::default());
    let req = a.stream_request(a.clients).await?;
    let (conns, took) = open_many(req, 0, a.clients, a.concurrency, &sink).await?;
    drop(conns);
    Ok(serde_json::json!({
        "connect_seconds": took.as_secs_f64(),
        "connects_per_second": a.clients as f64 / took.as_secs_f64(),
    }))
}

/// A ~1 KiB event stamped with the current time, to everyone.
pub(crate) async fn publish(a: &Args, admin: Option<&str>) -> Result<(), String> {
    let stamp = format!("t={};", now_micros());
    let padding = "x".repeat(1024 - stamp.len() - 60);
    let (status, text) = if a.ours() {
        // A live event: a `notification` to everyone would be a
        // persistent broadcast (stored, and the backlog of every later
        // fresh stream), which is not what this scenario measures.
        let body = format!(r#"{{"event":"bench","message":"{stamp}{padding}"}}"#);
        let headers = format!(
            "Content-Type: application/json\r\nCookie: {}\r\n",
            admin.unwrap_or_default()
        );
        request(a.addr, "POST", a.target.publish_path(), &headers, &body).await?
    } else {
        let body = format!("{stamp}{padding}");
        request(a.addr, "POST", a.target.publish_path(), "", &body).await?
    };
    // Nchan answers 201 (delivered to subscribers) or 202 (stored, none).
    if !matches!(status, 200..=202) {
        return Err(format!("publish: {status}: {text:.200}"));
    }
    Ok(())
}

/// Waits until `expected` events arrived or none arrived for 2 s; returns
/// when the last one did.
pub(crate) async fn settle(sink: &Sink, expected: u64) -> Instant {
    let mut last = (sink.received.load(Ordering::Relaxed), Instant::now());
    loop {
        let now = sink.received.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        }
        if now >= expected || last.1.elapsed() > Duration::from_secs(2) {
            return last.1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The server's RSS growth since `before`, per stream, in bytes; `null`
/// when RSS did not grow (a server that kept memory from an earlier run
/// says nothing about these streams).
fn per_stream(before: Option<u64>, now: Option<u64>, streams: usize) -> serde_json::Value {
    match (before, now) {
        (Some(before), Some(now)) if now > before => {
            ((now - before) * 1024 / streams.max(1) as u64).into()
        }
        _ => serde_json::Value::Null,
    }
}

async fn broadcast(a: &Args) -> Result<serde_json::Value, String> {
    let sink = Arc::new(Sink::default());
    let admin = a.admin().await?;
    // Memory per stream when idle and after the broadcasts (buffers that
    // grew while clients were behind), against the server before they
    // connected, sign-ins settled.
    let a = &a.with_sessions(a.clients).await?;
    let before = a.pid.and_then(rss_kib);
    let req = a.stream_request(a.clients).await?;
    let (conns, took) = open_many(req, 0, a.clients, a.concurrency, &sink).await?;
    let idle = a.pid.and_then(rss_kib);
    let interval = Duration::from_secs_f64(1.0 / a.rate.max(1) as f64);
    let events = a.rate as u64 * a.duration;
    let started = Instant::now();
    let mut tick = tokio::time::interval(interval);
    for _ in 0..events {
        tick.tick().await;
        publish(a, admin.as_deref()).await?;
    }
    let expected = events * a.clients as u64;
    let last = settle(&sink, expected).await;
    let loaded = a.pid.and_then(rss_kib);
    let elapsed = last.duration_since(started).as_secs_f64();
    let mut lat = std::mem::take(&mut *sink.latencies.lock().await);
    lat.sort_unstable();
    drop(conns);
    Ok(serde_json::json!({
        "connects_per_second": a.clients as f64 / took.as_secs_f64(),
        "rate": a.rate,
        "rss_before_kib": before,
        "idle_bytes_per_stream": per_stream(before, idle, a.clients),
        "loaded_bytes_per_stream": per_stream(before, loaded, a.clients),
        "events": events,
        "expected_deliveries": expected,
        "delivered": lat.len(),
        "delivered_per_second": lat.len() as f64 / elapsed,
        "latency_ms": latency_summary(&lat),
    }))
}

async fn saturate(a: &Args) -> Result<serde_json::Value, String> {
    let sink = Arc::new(Sink::default());
    let admin = a.admin().await?;
    let req = a.stream_request(a.clients).await?;
    let (conns, _) = open_many(req, 0, a.clients, a.concurrency, &sink).await?;
    let started = Instant::now();
    let until = started + Duration::from_secs(a.duration);
    let published = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut publishers = Vec::new();
    for _ in 0..a.publishers.max(1) {
        let (admin, published) = (admin.clone(), published.clone());
        let a = a.clone();
        publishers.push(tokio::spawn(async move {
            while Instant::now() < until {
                publish(&a, admin.as_deref()).await?;
                published.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), String>(())
        }));
    }
    for p in publishers {
        p.await.map_err(|e| e.to_string())??;
    }
    let events = published.load(Ordering::Relaxed);
    let expected = events * a.clients as u64;
    let last = settle(&sink, expected).await;
    let elapsed = last.duration_since(started).as_secs_f64();
    let delivered = sink.received.load(Ordering::Relaxed);
    let mut lat = std::mem::take(&mut *sink.latencies.lock().await);
    lat.sort_unstable();
    drop(conns);
    Ok(serde_json::json!({
        "publishers": a.publishers,
        "events": events,
        "expected_deliveries": expected,
        "delivered": delivered,
        "lost": expected.saturating_sub(delivered),
        "delivered_per_second": delivered as f64 / elapsed,
        "latency_ms": latency_summary(&lat),
    }))
}

/// Connects (waiting for the response head: the server has registered
/// the client by then) and disconnects, `count` times, `concurrency` at once.
async fn cycles(req: &Arc<StreamRequest>, count: usize, concurrency: usize) -> Result<(), String> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (req, next) = (req.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    return Ok::<(), String>(());
                }
                drop(connect_stream(&req, n).await?.0);
            }
        }));
    }
    for w in workers {
        w.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// How long RSS is left to settle before it is read. Sign-in hashes
/// passwords with 19 MiB each on tokio's blocking threads; the allocator
/// keeps that memory in those threads' heaps until the threads retire,
/// after 10 s idle.
pub(crate) const SETTLE: Duration = Duration::from_secs(12);

async fn churn(a: &Args) -> Result<serde_json::Value, String> {
    let admin = a.admin().await?;
    let req = a.stream_request(a.per_user.max(1) * 10).await?;
    let count = |admin: Option<String>| async move {
        // Disconnects are noticed asynchronously: wait for them.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let open = server_count(a.addr, a.target, admin.as_deref()).await?;
            if open == 0 || Instant::now() > deadline {
                return Ok::<u64, String>(open);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    cycles(&req, a.warmup, a.concurrency).await?;
    count(admin.clone()).await?;
    tokio::time::sleep(SETTLE).await;
    let before = a.pid.and_then(rss_kib);
    let started = Instant::now();
    cycles(&req, a.cycles, a.concurrency).await?;
    let took = started.elapsed();
    let leaked = count(admin.clone()).await?;
    tokio::time::sleep(SETTLE).await;
    let after = a.pid.and_then(rss_kib);
    let mut out = serde_json::json!({
        "cycles": a.cycles,
        "warmup_cycles": a.warmup,
        "cycles_per_second": a.cycles as f64 / took.as_secs_f64(),
        "open_after": leaked,
    });
    add_rss(&mut out, before, after);
    Ok(out)
}

/// The server's RSS before and after a run, and the growth, when known.
pub(crate) fn add_rss(out: &mut serde_json::Value, before: Option<u64>, after: Option<u64>) {
    if let (Some(before), Some(after)) = (before, after) {
        out["rss_before_kib"] = before.into();
        out["rss_after_kib"] = after.into();
        out["rss_growth_percent"] = ((after as f64 - before as f64) * 100.0 / before as f64).into();
    }
}
