//! `publish`: the publish API's throughput. One probe stream (user
//! `benchprobe`) receives everything; `--publishers` tasks, each on one
//! keep-alive connection, send as fast as they go for `--duration`:
//! through `POST /api/publish` with the service token `--token`, one
//! event per request (`--events 1`) or `--events` per batch; or, with
//! `--variant notifier`, through the app's own server function `POST
//! /api/sse/test` (a session cookie, then `Notifier::send` in-process),
//! the same work without the API. Reports events accepted (answered 200)
//! and delivered to the probe per second, and the delivery latency.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::http::{body_of, now_micros, request, session};
use crate::streams::{Sink, StreamRequest, latency_summary, open_stream};
use crate::{Args, settle};

/// One keep-alive HTTP/1.1 connection: a request, then its whole answer.
struct KeepAlive {
    stream: TcpStream,
    addr: SocketAddr,
    buf: Vec<u8>,
}

impl KeepAlive {
    async fn open(addr: SocketAddr) -> Result<Self, String> {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(KeepAlive {
            stream,
            addr,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// POSTs `body`; the status.
    async fn post(&mut self, path: &str, headers: &str, body: &str) -> Result<u16, String> {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{headers}\r\n{body}",
            self.addr,
            body.len()
        );
        self.stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        self.buf.clear();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or("an answer without content-length")?;
                while self.buf.len() < end + 4 + length {
                    let n = self
                        .stream
                        .read(&mut chunk)
                        .await
                        .map_err(|e| e.to_string())?;
                    if n == 0 {
                        return Err("closed mid-answer".into());
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                return head
                    .get(9..12)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| "bad status line".to_string());
            }
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed before answering".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

pub(crate) async fn publish(a: &Args) -> Result<serde_json::Value, String> {
    let probe = session(a.addr, "benchprobe").await?;
    let cookie = format!("Cookie: {probe}\r\n");
    let (status, me) = request(a.addr, "POST", "/api/auth/me", &cookie, "").await?;
    if status != 200 {
        return Err(format!("me: {status}"));
    }
    let me: serde_json::Value = serde_json::from_str(body_of(&me)).map_err(|e| e.to_string())?;
    let user = me["id"].as_str().ok_or("no user id")?.to_string();
    let via_notifier = a.variant.as_deref() == Some("notifier");
    let token = std::env::var("BENCH_SERVICE_TOKEN").unwrap_or_default();
    if !via_notifier && token.is_empty() {
        return Err(
            "publish: BENCH_SERVICE_TOKEN (a service token with the publish scope) is not set"
                .into(),
        );
    }
    let batch = if via_notifier { 1 } else { a.events.max(1) };
    let sink = Arc::new(Sink::default());
    let req = StreamRequest {
        addr: a.addr,
        path: "/api/sse",
        cookies: Arc::new(vec![probe.clone()]),
        reuse: false,
        last_event_id: None,
    };
    let conn = open_stream(&req, 0, sink.clone()).await?;
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(a.duration);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..a.publishers.max(1) {
        let (accepted, refused) = (accepted.clone(), refused.clone());
        let (addr, user, token, probe) = (a.addr, user.clone(), token.clone(), probe.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = KeepAlive::open(addr).await?;
            while Instant::now() < deadline {
                let (path, headers, body) = if via_notifier {
                    (
                        "/api/sse/test",
                        format!("Cookie: {probe}\r\n"),
                        format!(r#"{{"user":"benchprobe","event":"bench","message":"t={};"}}"#, now_micros()),
                    )
                } else {
                    let one = |t: u64| {
                        format!(r#"{{"target":{{"user":"{user}"}},"event":"bench","data":{{"m":"t={t};"}}}}"#)
                    };
                    let body = if batch == 1 {
                        one(now_micros())
                    } else {
                        let t = now_micros();
                        let items: Vec<String> = (0..batch).map(|_| one(t)).collect();
                        format!("[{}]", items.join(","))
                    };
                    ("/api/publish", format!("Authorization: Bearer {token}\r\n"), body)
                };
                match client.post(path, &headers, &body).await? {
                    200 => accepted.fetch_add(batch as u64, Ordering::Relaxed),
                    _ => refused.fetch_add(batch as u64, Ordering::Relaxed),
                };
            }
            Ok::<_, String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    let sending = started.elapsed();
    let accepted = accepted.load(Ordering::Relaxed);
    let last = settle(&sink, accepted).await;
    let delivering = last.duration_since(started);
    let delivered = sink.received.load(Ordering::Relaxed);
    let mut lat = std::mem::take(&mut *sink.latencies.lock().await);
    lat.sort_unstable();
    drop(conn);
    Ok(serde_json::json!({
        "via": if via_notifier { "server function (Notifier::send)" } else { "POST /api/publish" },
        "publishers": a.publishers,
        "batch": batch,
        "accepted": accepted,
        "refused": refused.load(Ordering::Relaxed),
        "accepted_per_s": (accepted as f64 / sending.as_secs_f64()).round(),
        "delivered": delivered,
        "delivered_per_s": (delivered as f64 / delivering.as_secs_f64()).round(),
        "latency_ms": latency_summary(&lat),
    }))
}
