//! Load generator for `make bench` (see BENCHMARKS.md).
//!
//! Opens many SSE connections to a running server — ours (`--target ours`,
//! authenticated through the real sign-up endpoint) or the naive baseline
//! (`--target baseline`) — spreading source addresses over 127.0.0.x, and
//! measures one scenario:
//!
//! - `idle`: hold N connections; server RSS before/after, bytes per connection;
//! - `broadcast`: 1 KiB events to N clients at a fixed rate; delivery latency
//!   percentiles (send time is in the payload) and delivered events/s;
//! - `connect`: connections opened per second;
//! - `floor`: no server: plain `write()`s of 1 KiB to N loopback sockets,
//!   the kernel's own cost of a broadcast.
//!
//! Output: one JSON object per run on stdout.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Mutex;

const PASSWORD: &str = "bench password 1";

struct Args {
    target: String,
    addr: SocketAddr,
    scenario: String,
    clients: usize,
    /// Events per second (broadcast).
    rate: u32,
    /// Seconds to hold or to send for.
    duration: u64,
    /// Server pid, for RSS.
    pid: Option<u32>,
    /// Connections per account (ours).
    per_user: usize,
    concurrency: usize,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        target: "ours".into(),
        addr: "127.0.0.1:3000".parse().map_err(|e| format!("{e}"))?,
        scenario: "idle".into(),
        clients: 1000,
        rate: 10,
        duration: 10,
        pid: None,
        per_user: 1000,
        concurrency: 128,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let bad = |e: &dyn std::fmt::Display| format!("{flag}: {e}");
        match flag.as_str() {
            "--target" => a.target = value()?,
            "--addr" => a.addr = value()?.parse().map_err(|e| bad(&e))?,
            "--scenario" => a.scenario = value()?,
            "--clients" => a.clients = value()?.parse().map_err(|e| bad(&e))?,
            "--rate" => a.rate = value()?.parse().map_err(|e| bad(&e))?,
            "--duration" => a.duration = value()?.parse().map_err(|e| bad(&e))?,
            "--pid" => a.pid = Some(value()?.parse().map_err(|e| bad(&e))?),
            "--per-user" => a.per_user = value()?.parse().map_err(|e| bad(&e))?,
            "--concurrency" => a.concurrency = value()?.parse().map_err(|e| bad(&e))?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A connection from 127.0.0.(2..=251), so that one generator is not
/// limited by one source address's ports.
async fn connect_from(addr: SocketAddr, n: usize) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    let source = Ipv4Addr::new(127, 0, 0, 2 + (n % 250) as u8);
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A tiny HTTP/1.1 request; returns status and the response's headers.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n{body}",
        body.len()
    );
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    stream
        .read_to_end(&mut out)
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad response: {text:.80}"))?;
    Ok((status, text))
}

/// Signs up (or in) `name`; returns its `sid=…` cookie.
async fn session(addr: SocketAddr, name: &str) -> Result<String, String> {
    let form = format!("username={name}&password={}", PASSWORD.replace(' ', "+"));
    let ct = "Content-Type: application/x-www-form-urlencoded\r\n";
    let (mut status, mut text) = request(addr, "POST", "/api/auth/signup", ct, &form).await?;
    if status == 409 {
        (status, text) = request(addr, "POST", "/api/auth/login", ct, &form).await?;
    }
    if status != 200 {
        return Err(format!("sign-in of {name}: {status}: {text:.200}"));
    }
    text.lines()
        .find_map(|l| {
            let lower = l.to_ascii_lowercase();
            lower.starts_with("set-cookie: sid=").then(|| {
                l["set-cookie: ".len()..]
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
        })
        .ok_or_else(|| "no session cookie".to_string())
}

/// One open stream: its socket, read by a task that records latencies.
struct Conn {
    task: tokio::task::JoinHandle<()>,
}

/// Where received events' latencies go.
#[derive(Default)]
struct Sink {
    latencies: Mutex<Vec<u32>>,
    received: AtomicU64,
}

/// Opens one SSE stream and starts reading it.
async fn open_stream(
    addr: SocketAddr,
    n: usize,
    path: &str,
    cookie: Option<&str>,
    sink: Arc<Sink>,
) -> Result<Conn, String> {
    let mut stream = connect_from(addr, n)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{cookie}\r\n");
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    // Read the head (and whatever follows in the same segment).
    let mut buf = vec![0u8; 4096];
    let mut have = 0;
    loop {
        let read = stream
            .read(&mut buf[have..])
            .await
            .map_err(|e| e.to_string())?;
        if read == 0 {
            return Err("closed before the response head".into());
        }
        have += read;
        if buf[..have].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
        if have == buf.len() {
            return Err("response head too long".into());
        }
    }
    if !buf.starts_with(b"HTTP/1.1 200") {
        return Err(format!(
            "refused: {}",
            String::from_utf8_lossy(&buf[..have.min(120)])
        ));
    }
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        let mut carry: Vec<u8> = Vec::new();
        loop {
            let read = match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let arrived = now_micros();
            carry.extend_from_slice(&buf[..read]);
            // Each event carries "t=<send time in µs>;".
            let mut consumed = 0;
            let mut found = Vec::new();
            while let Some(at) = find(&carry[consumed..], b"t=") {
                let start = consumed + at + 2;
                let digits = carry[start..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                if start + digits >= carry.len() {
                    break; // number may continue in the next read
                }
                if digits > 0
                    && let Ok(sent) = std::str::from_utf8(&carry[start..start + digits])
                        .unwrap_or("")
                        .parse::<u64>()
                {
                    found.push(arrived.saturating_sub(sent).min(u32::MAX as u64) as u32);
                }
                consumed = start + digits;
            }
            carry.drain(
                ..consumed
                    .max(carry.len().saturating_sub(64))
                    .min(carry.len()),
            );
            if !found.is_empty() {
                sink.received
                    .fetch_add(found.len() as u64, Ordering::Relaxed);
                sink.latencies.lock().await.extend(found);
            }
        }
    });
    Ok(Conn { task })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Opens `clients` streams with bounded concurrency; returns them and the
/// time it took.
async fn open_all(a: &Args, sink: &Arc<Sink>) -> Result<(Vec<Conn>, Duration), String> {
    let path = if a.target == "ours" {
        "/api/sse"
    } else {
        "/sse"
    };
    let mut cookies = Vec::new();
    if a.target == "ours" {
        let users = a.clients.div_ceil(a.per_user.max(1));
        for u in 0..users {
            cookies.push(session(a.addr, &format!("bench{u}")).await?);
        }
    }
    let cookies = Arc::new(cookies);
    let started = Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(a.concurrency));
    let mut pending = Vec::with_capacity(a.clients);
    for n in 0..a.clients {
        let permit = semaphore
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let cookies = cookies.clone();
        let sink = sink.clone();
        let addr = a.addr;
        pending.push(tokio::spawn(async move {
            let cookie = (!cookies.is_empty()).then(|| cookies[n % cookies.len()].clone());
            let conn = open_stream(addr, n, path, cookie.as_deref(), sink).await;
            drop(permit);
            conn
        }));
    }
    let mut conns = Vec::with_capacity(a.clients);
    for p in pending {
        conns.push(p.await.map_err(|e| e.to_string())??);
    }
    Ok((conns, started.elapsed()))
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Publishes one ~1 KiB event stamped with the current time.
async fn publish(a: &Args, admin_cookie: Option<&str>) -> Result<(), String> {
    let stamp = format!("t={};", now_micros());
    let padding = "x".repeat(1024 - stamp.len() - 60);
    let (status, text) = if a.target == "ours" {
        let body = format!(r#"{{"message":"{stamp}{padding}"}}"#);
        let headers = format!(
            "Content-Type: application/json\r\nCookie: {}\r\n",
            admin_cookie.unwrap_or_default()
        );
        request(a.addr, "POST", "/api/sse/broadcast", &headers, &body).await?
    } else {
        request(a.addr, "POST", "/publish", "", &format!("{stamp}{padding}")).await?
    };
    if status != 200 {
        return Err(format!("publish: {status}: {text:.200}"));
    }
    Ok(())
}

/// The kernel floor: 1 KiB `write()`s to `n` connected loopback sockets.
fn floor(n: usize) -> Result<serde_json::Value, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut clients = Vec::with_capacity(n);
    let mut servers = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?);
        let (s, _) = listener.accept().map_err(|e| e.to_string())?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        servers.push(s);
    }
    let payload = vec![b'x'; 1024];
    let mut runs = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        for s in servers.iter_mut() {
            s.write_all(&payload).map_err(|e| e.to_string())?;
        }
        runs.push(started.elapsed());
        // Let the receivers' buffers drain between runs.
        for c in clients.iter_mut() {
            let mut sink = [0u8; 2048];
            use std::io::Read;
            c.set_read_timeout(Some(Duration::from_millis(50))).ok();
            let _ = c.read(&mut sink);
        }
    }
    runs.sort();
    let median = runs[runs.len() / 2];
    Ok(serde_json::json!({
        "scenario": "floor",
        "sockets": n,
        "write_loop_ms_median": median.as_secs_f64() * 1e3,
        "per_write_us": median.as_secs_f64() * 1e6 / n as f64,
    }))
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
        Ok(result) => println!("{result}"),
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(1);
        }
    }
}

async fn run(a: &Args) -> Result<serde_json::Value, String> {
    if a.scenario == "floor" {
        return floor(a.clients);
    }
    let sink = Arc::new(Sink::default());
    let rss_before = a.pid.and_then(rss_kib);
    let admin = if a.target == "ours" && a.scenario == "broadcast" {
        Some(session(a.addr, "benchadmin").await?)
    } else {
        None
    };
    let (conns, connect_time) = open_all(a, &sink).await?;
    let connects_per_s = a.clients as f64 / connect_time.as_secs_f64();
    let mut result = serde_json::json!({
        "target": a.target,
        "scenario": a.scenario,
        "clients": a.clients,
        "connect_seconds": connect_time.as_secs_f64(),
        "connects_per_second": connects_per_s,
    });
    match a.scenario.as_str() {
        "connect" => {}
        "idle" => {
            tokio::time::sleep(Duration::from_secs(a.duration)).await;
            let rss_after = a.pid.and_then(rss_kib);
            if let (Some(before), Some(after)) = (rss_before, rss_after) {
                result["rss_before_kib"] = before.into();
                result["rss_after_kib"] = after.into();
                result["bytes_per_connection"] =
                    ((after.saturating_sub(before)) * 1024 / a.clients.max(1) as u64).into();
            }
        }
        "broadcast" => {
            let interval = Duration::from_secs_f64(1.0 / a.rate.max(1) as f64);
            let events = a.rate as u64 * a.duration;
            let started = Instant::now();
            let mut tick = tokio::time::interval(interval);
            for _ in 0..events {
                tick.tick().await;
                publish(a, admin.as_deref()).await?;
            }
            let expected = events * a.clients as u64;
            let deadline = Instant::now() + Duration::from_secs(10);
            while sink.received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let elapsed = started.elapsed().as_secs_f64();
            let mut lat = std::mem::take(&mut *sink.latencies.lock().await);
            lat.sort_unstable();
            let received = lat.len() as u64;
            result["events"] = events.into();
            result["expected_deliveries"] = expected.into();
            result["delivered"] = received.into();
            result["delivered_per_second"] = (received as f64 / elapsed).into();
            result["latency_ms"] = serde_json::json!({
                "p50": percentile(&lat, 0.50) as f64 / 1e3,
                "p95": percentile(&lat, 0.95) as f64 / 1e3,
                "p99": percentile(&lat, 0.99) as f64 / 1e3,
                "max": lat.last().copied().unwrap_or(0) as f64 / 1e3,
            });
        }
        other => return Err(format!("unknown scenario {other}")),
    }
    for c in conns {
        c.task.abort();
    }
    Ok(result)
}
