//! Opening SSE streams and reading them: each received event's latency
//! (its payload carries `t=<send time in µs>;`) goes to a shared sink.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::http::{connect_from, now_micros};

/// Where received events' latencies go.
#[derive(Default)]
pub struct Sink {
    pub latencies: Mutex<Vec<u32>>,
    pub received: AtomicU64,
    /// Streams whose opening `inbox` summary arrived (each counts once).
    pub openings: AtomicU64,
}

/// One open stream, read by a task; aborted on drop.
pub struct Conn {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The stream request for a target: ours is authenticated by cookie.
pub struct StreamRequest {
    pub addr: SocketAddr,
    pub path: &'static str,
    pub cookies: Arc<Vec<String>>,
    /// Send another request first on the same connection, as a browser's
    /// EventSource does when it reuses a keep-alive connection.
    pub reuse: bool,
    /// Sent as `Last-Event-ID` (resume after it).
    pub last_event_id: Option<String>,
}

impl StreamRequest {
    pub fn bytes(&self, n: usize) -> String {
        let cookie = if self.cookies.is_empty() {
            String::new()
        } else {
            format!("Cookie: {}\r\n", self.cookies[n % self.cookies.len()])
        };
        let resume = self
            .last_event_id
            .as_ref()
            .map_or(String::new(), |id| format!("Last-Event-ID: {id}\r\n"));
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n{cookie}{resume}\r\n",
            self.path, self.addr
        )
    }
}

/// Connects and reads the response head; `Err` unless it is a 200.
/// Returns the socket and the body bytes read with the head (a replay
/// follows the head at once).
pub async fn connect_stream(req: &StreamRequest, n: usize) -> Result<(TcpStream, Vec<u8>), String> {
    let mut stream = connect_from(req.addr, n)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    if req.reuse {
        first_request(&mut stream, req).await?;
    }
    stream
        .write_all(req.bytes(n).as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 2048];
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
        if let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
            if !buf.starts_with(b"HTTP/1.1 200") {
                return Err(format!(
                    "refused: {}",
                    String::from_utf8_lossy(&buf[..have.min(160)])
                ));
            }
            return Ok((stream, buf[end + 4..have].to_vec()));
        }
        if have == buf.len() {
            return Err("response head too long".into());
        }
    }
}

/// A small request with a `content-length` answer (ours: the listing
/// without a session, 401; the baseline: its count; Nchan: its channel's
/// info), read whole.
async fn first_request(stream: &mut TcpStream, req: &StreamRequest) -> Result<(), String> {
    let path = match req.path {
        "/api/sse" => "/api/sse/clients",
        "/sub" => "/pub",
        _ => "/count",
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", req.addr);
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let read = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if read == 0 {
            return Err("closed after the first request".into());
        }
        got.extend_from_slice(&buf[..read]);
        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or("the first response has no content-length")?;
        if got.len() >= end + 4 + length {
            return Ok(());
        }
    }
}

/// Opens one stream and starts reading it into `sink`.
pub async fn open_stream(req: &StreamRequest, n: usize, sink: Arc<Sink>) -> Result<Conn, String> {
    let (stream, first) = connect_stream(req, n).await?;
    Ok(Conn {
        task: tokio::spawn(read_events(stream, first, sink)),
    })
}

async fn read_events(mut stream: TcpStream, first: Vec<u8>, sink: Arc<Sink>) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut carry: Vec<u8> = Vec::new();
    let mut pending = Some(first);
    let mut opened = false;
    loop {
        let read = match pending.take() {
            Some(first) => {
                buf[..first.len()].copy_from_slice(&first);
                first.len()
            }
            None => match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
        };
        let arrived = now_micros();
        carry.extend_from_slice(&buf[..read]);
        if !opened && find(&carry, b"event: inbox\n").is_some() {
            opened = true;
            sink.openings.fetch_add(1, Ordering::Relaxed);
        }
        let mut consumed = 0;
        let mut found = Vec::new();
        while let Some(at) = find(&carry[consumed..], b"t=") {
            let start = consumed + at + 2;
            let digits = carry[start..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            if start + digits >= carry.len() {
                break; // the number may continue in the next read
            }
            if let Some(sent) = std::str::from_utf8(&carry[start..start + digits])
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
            {
                found.push(arrived.saturating_sub(sent).min(u32::MAX as u64) as u32);
            }
            consumed = start + digits;
        }
        let keep_from = consumed
            .max(carry.len().saturating_sub(64))
            .min(carry.len());
        carry.drain(..keep_from);
        if !found.is_empty() {
            sink.received
                .fetch_add(found.len() as u64, Ordering::Relaxed);
            sink.latencies.lock().await.extend(found);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Opens streams `first..first + count` with at most `concurrency` in
/// flight; returns them and the time it took.
pub async fn open_many(
    req: Arc<StreamRequest>,
    first: usize,
    count: usize,
    concurrency: usize,
    sink: &Arc<Sink>,
) -> Result<(Vec<Conn>, Duration), String> {
    let started = Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut pending = Vec::with_capacity(count);
    for n in first..first + count {
        let permit = semaphore
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let req = req.clone();
        let sink = sink.clone();
        pending.push(tokio::spawn(async move {
            let conn = open_stream(&req, n, sink).await;
            drop(permit);
            conn
        }));
    }
    let mut conns = Vec::with_capacity(count);
    for p in pending {
        conns.push(p.await.map_err(|e| e.to_string())??);
    }
    Ok((conns, started.elapsed()))
}

pub fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// p50/p95/p99/p99.9/max in milliseconds of sorted microseconds, and the
/// whole distribution (`cdf`: the 0th, 1st, … 100th percentile) for the
/// charts (`scripts/charts.py`).
pub fn latency_summary(sorted: &[u32]) -> serde_json::Value {
    let ms = |p: f64| percentile(sorted, p) as f64 / 1e3;
    let cdf: Vec<f64> = (0..=100).map(|i| ms(i as f64 / 100.0)).collect();
    serde_json::json!({
        "samples": sorted.len(),
        "p50": ms(0.50),
        "p95": ms(0.95),
        "p99": ms(0.99),
        "p999": ms(0.999),
        "max": sorted.last().copied().unwrap_or(0) as f64 / 1e3,
        "cdf": cdf,
    })
}
