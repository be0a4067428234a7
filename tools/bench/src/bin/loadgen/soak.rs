//! `soak`: mixed traffic for `--duration` seconds from `--concurrency`
//! workers, most of it abandoned mid-response the way browsers abandon
//! it (tab closed, navigation): page loads (GET and HEAD, every page, a
//! 404, an authority-form target) cut after a random number of bytes,
//! streams held for a random time then reset, sends whose answer is not
//! always read. Before and after (each after the server has settled):
//! its RSS and its count of open streams. `scripts/bench.sh` then stops
//! the server with SIGTERM and checks how long that took and its log.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Args;
use crate::http::{connect_from, rss_kib, server_count, session};

/// Soak accounts that receive the sends and hold the streams.
const USERS: usize = 20;
/// Spreads a worker's consecutive connections over source addresses.
const STRIDE: usize = 7;
/// The part of the run before the reference RSS reading.
const WARMUP: Duration = Duration::from_secs(30);

/// What the workers did.
#[derive(Default, Clone, Copy)]
struct Tally {
    pages: u64,
    streams: u64,
    sends: u64,
    refused: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.pages += o.pages;
        self.streams += o.streams;
        self.sends += o.sends;
        self.refused += o.refused;
    }
}

pub async fn soak(a: &Args) -> Result<serde_json::Value, String> {
    if !a.ours() {
        return Err("soak runs against our server only".into());
    }
    let admin = a.admin().await?;
    let mut cookies = Vec::new();
    for u in 0..USERS {
        cookies.push(session(a.addr, &format!("soak{u}")).await?);
    }
    let sender = session(a.addr, "soaksender").await?;
    run(a, &cookies, &sender, WARMUP).await;
    tokio::time::sleep(crate::SETTLE).await;
    let before = a.pid.and_then(rss_kib);
    let started = Instant::now();
    let tally = run(a, &cookies, &sender, Duration::from_secs(a.duration)).await;
    let took = started.elapsed();
    let open_after = wait_for_no_streams(a, admin.as_deref()).await?;
    tokio::time::sleep(crate::SETTLE).await;
    let after = a.pid.and_then(rss_kib);
    let mut out = serde_json::json!({
        "seconds": took.as_secs_f64(),
        "workers": a.concurrency,
        "pages_abandoned": tally.pages,
        "streams_reset": tally.streams,
        "sends": tally.sends,
        "refused": tally.refused,
        "open_after": open_after,
    });
    crate::add_rss(&mut out, before, after);
    Ok(out)
}

async fn wait_for_no_streams(a: &Args, admin: Option<&str>) -> Result<u64, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let open = server_count(a.addr, crate::Target::Ours, admin).await?;
        if open == 0 || Instant::now() > deadline {
            return Ok(open);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn run(a: &Args, cookies: &[String], sender: &str, length: Duration) -> Tally {
    let until = Instant::now() + length;
    let mut workers = Vec::new();
    for w in 0..a.concurrency {
        let (addr, cookies, sender) = (a.addr, cookies.to_vec(), sender.to_string());
        workers.push(tokio::spawn(async move {
            let mut rng = Rng(0x5eed ^ ((w as u64) << 20));
            let mut tally = Tally::default();
            let mut n = w;
            while Instant::now() < until {
                n += STRIDE;
                let pick = rng.next();
                let done = match pick % 100 {
                    0..45 => page(addr, n, &mut rng).await.map(|()| tally.pages += 1),
                    45..75 => {
                        let cookie = &cookies[(pick >> 8) as usize % cookies.len()];
                        stream(addr, n, cookie, &mut rng)
                            .await
                            .map(|()| tally.streams += 1)
                    }
                    _ => send(addr, n, &sender, &mut rng)
                        .await
                        .map(|()| tally.sends += 1),
                };
                if done.is_err() {
                    tally.refused += 1;
                }
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for worker in workers {
        if let Ok(tally) = worker.await {
            total += tally;
        }
    }
    total
}

/// splitmix64: deterministic per worker.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }
}

const PAGES: &[&str] = &["/", "/login", "/signup", "/home", "/no-such-page"];

/// A page request abandoned after 0–4 000 bytes of its answer.
async fn page(addr: SocketAddr, n: usize, rng: &mut Rng) -> Result<(), String> {
    let pick = rng.next();
    let method = if pick.is_multiple_of(4) {
        "HEAD"
    } else {
        "GET"
    };
    let target = if pick % 10 == 1 {
        addr.to_string()
    } else {
        PAGES[(pick >> 8) as usize % PAGES.len()].to_string()
    };
    let request = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let mut socket = open(addr, n).await?;
    write(&mut socket, &request).await?;
    read_some(
        &mut socket,
        (pick >> 16) as usize % 4000,
        Duration::from_secs(10),
    )
    .await;
    reset(socket);
    Ok(())
}

/// A stream held for 0–3 s, then reset.
async fn stream(addr: SocketAddr, n: usize, cookie: &str, rng: &mut Rng) -> Result<(), String> {
    let hold = Duration::from_millis(rng.next() % 3000);
    let mut socket = open(addr, n).await?;
    let request = format!(
        "GET /api/sse HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nCookie: {cookie}\r\n\r\n"
    );
    write(&mut socket, &request).await?;
    let until = tokio::time::Instant::now() + hold;
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout_at(until, socket.read(&mut buf)).await {
        if n == 0 {
            break;
        }
    }
    reset(socket);
    Ok(())
}

/// A send to one of the soak users; half the time its answer is not read.
async fn send(addr: SocketAddr, n: usize, sender: &str, rng: &mut Rng) -> Result<(), String> {
    let pick = rng.next();
    let body = format!(
        r#"{{"user":"soak{}","message":"soak {pick}"}}"#,
        pick as usize % USERS
    );
    let request = format!(
        "POST /api/sse/test HTTP/1.1\r\nHost: {addr}\r\nCookie: {sender}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut socket = open(addr, n).await?;
    write(&mut socket, &request).await?;
    let keep = if pick.is_multiple_of(2) {
        usize::MAX
    } else {
        0
    };
    read_some(&mut socket, keep, Duration::from_secs(10)).await;
    reset(socket);
    Ok(())
}

async fn open(addr: SocketAddr, n: usize) -> Result<TcpStream, String> {
    tokio::time::timeout(Duration::from_secs(10), connect_from(addr, n))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))
}

async fn write(socket: &mut TcpStream, request: &str) -> Result<(), String> {
    socket
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())
}

/// Reads until `keep` bytes came, the peer closed, `within` passed, or
/// (for an answer shorter than `keep` on a keep-alive connection) nothing
/// came for `IDLE_GAP`.
async fn read_some(socket: &mut TcpStream, keep: usize, within: Duration) {
    const IDLE_GAP: Duration = Duration::from_millis(300);
    let deadline = tokio::time::Instant::now() + within;
    let mut got = 0;
    let mut buf = [0u8; 4096];
    while got < keep {
        let gap = (tokio::time::Instant::now() + IDLE_GAP).min(deadline);
        match tokio::time::timeout_at(gap, socket.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got += n,
            _ => break,
        }
    }
}

/// Closes with RST, as a browser tab that goes away mid-response does.
fn reset(socket: TcpStream) {
    let _ = socket.set_zero_linger();
}
