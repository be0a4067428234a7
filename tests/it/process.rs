//! The shipped binary as an operator runs it: a separate process, stopped
//! with SIGTERM. Once, a few thousand page
//! requests abandoned mid-response (some `HEAD`, some with an
//! authority-form target) logged panics inside leptos and wedged a worker
//! in a deadlock, after which the process ignored SIGTERM.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The server's `server.shutdown_timeout` in these tests, and the margin
/// the binary adds before it exits regardless.
const GRACE: Duration = Duration::from_secs(3);
const MARGIN: Duration = Duration::from_secs(3);

struct Server {
    child: Child,
    addr: String,
    data_dir: std::path::PathBuf,
}

impl Server {
    fn start() -> Server {
        Self::start_with(&[])
    }

    /// With `env` on top of the settings below.
    fn start_with(env: &[(&str, &str)]) -> Server {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            probe.local_addr().expect("addr").port()
        };
        let addr = format!("127.0.0.1:{port}");
        let data_dir =
            std::env::temp_dir().join(format!("sse-notify-process-{}", uuid::Uuid::new_v4()));
        let mut command = Command::new(env!("CARGO_BIN_EXE_sse_notify"));
        command
            .env("LEPTOS_SITE_ADDR", &addr)
            .env("DATA_DIR", &data_dir)
            .env("SERVER_SHUTDOWN_TIMEOUT", format!("{}s", GRACE.as_secs()))
            .env("RUST_LOG", "info")
            .env("METRICS_ADDR", "")
            // These tests are about the stop itself, not the drain.
            .env("SERVER_DRAIN_DELAY", "0s")
            .env("SERVER_DRAIN_WINDOW", "0s")
            .env_remove("DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Ok(mode) = std::env::var("SERVER_DIRECT_RESPONSES") {
            command.env("SERVER_DIRECT_RESPONSES", mode);
        }
        command.envs(env.iter().copied());
        let child = command.spawn().expect("start the server binary");
        Server {
            child,
            addr,
            data_dir,
        }
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = get_status(&self.addr, "/login").await {
                assert_eq!(status, 200);
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server did not answer within 30 s");
    }

    /// SIGTERM, then the time it took to exit and everything it logged.
    fn terminate(mut self) -> (Option<Duration>, String) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let started = Instant::now();
        let limit = GRACE + MARGIN + Duration::from_secs(2);
        let mut exited = None;
        while started.elapsed() < limit {
            if let Ok(Some(_)) = self.child.try_wait() {
                exited = Some(started.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let mut log = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = stderr.read_to_string(&mut log);
        }
        (exited, log)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// The status of a plain GET, or `None` if the server did not answer.
async fn get_status(addr: &str, path: &str) -> Option<u16> {
    let exchange = async {
        let mut socket = TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        socket.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        socket.read_exact(&mut head).await.ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

/// A small deterministic generator: the same soak every run.
fn next(state: &AtomicU64) -> u64 {
    let mut x = state.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// One request abandoned after reading `keep` bytes of its answer: the
/// socket is reset, as by a browser tab closed mid-load.
async fn abandoned(addr: &str, request: &str, keep: usize) {
    let connect = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr));
    let Ok(Ok(mut socket)) = connect.await else {
        return;
    };
    if socket.write_all(request.as_bytes()).await.is_err() {
        return;
    }
    let mut got = 0;
    let mut buf = [0u8; 512];
    while got < keep {
        match tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got += n,
            _ => break,
        }
    }
    let _ = socket.set_zero_linger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_page_loads_neither_panic_nor_wedge_shutdown() {
    const REQUESTS: usize = 1200;
    const IN_FLIGHT: usize = 40;
    let server = Server::start();
    server.wait_ready().await;
    let addr = Arc::new(server.addr.clone());
    let requests: Vec<String> = {
        let mut out = Vec::new();
        for method in ["GET", "GET", "GET", "HEAD"] {
            for path in ["/", "/login", "/signup", "/home", "/no-such-page"] {
                out.push(format!("{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n"));
            }
        }
        out.push(format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", addr));
        out.push(format!("HEAD {} HTTP/1.1\r\nHost: x\r\n\r\n", addr));
        out
    };
    let requests = Arc::new(requests);
    let seed = Arc::new(AtomicU64::new(7));
    let done = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (addr, requests, seed, done) =
            (addr.clone(), requests.clone(), seed.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            while done.fetch_add(1, Ordering::Relaxed) < REQUESTS as u64 {
                let pick = next(&seed) as usize;
                let request = &requests[pick % requests.len()];
                abandoned(&addr, request, (pick >> 16) % 2000).await;
            }
        }));
    }
    // A wedged server must fail the test, not hang it.
    let soak = async {
        for worker in workers {
            worker.await.expect("worker");
        }
    };
    let finished = tokio::time::timeout(Duration::from_secs(180), soak).await;
    assert!(finished.is_ok(), "the soak did not finish within 180 s");
    // Still serving after the soak...
    assert_eq!(get_status(&addr, "/login").await, Some(200));
    // ...and it stops in time when asked.
    let (exited, log) = server.terminate();
    let exited = exited.unwrap_or_else(|| {
        panic!(
            "still running {:?} after SIGTERM; log tail:\n{}",
            GRACE + MARGIN,
            tail(&log)
        )
    });
    assert!(exited <= GRACE + MARGIN, "exited after {exited:?}");
    assert!(
        !log.contains("panicked"),
        "panics logged during the soak:\n{}",
        log.lines()
            .filter(|l| l.contains("panicked"))
            .take(10)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(log.contains("server stopped"), "{}", tail(&log));
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// `log.format = "json"`: every line one object, and a line logged while
/// a request is answered carries the request's span.
#[tokio::test]
async fn json_logs_are_one_object_per_line_with_the_request_span() {
    let server = Server::start_with(&[("LOG_FORMAT", "json")]);
    server.wait_ready().await;
    let signup = reqwest::Client::new()
        .post(format!("http://{}/api/auth/signup", server.addr))
        .form(&[
            ("username", "jason"),
            ("password", crate::support::PASSWORD),
        ])
        .send()
        .await
        .expect("signup");
    assert_eq!(signup.status(), 200);
    let (exited, log) = server.terminate();
    assert!(exited.is_some(), "exits on SIGTERM");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let created = lines
        .iter()
        .find(|l| l["fields"]["message"] == "account created")
        .unwrap_or_else(|| panic!("no `account created` line in {log}"));
    let request = &created["spans"][0];
    assert_eq!(request["name"], "request", "{created}");
    assert_eq!(request["path"], "/api/auth/signup", "{created}");
    assert!(request["id"].as_str().is_some_and(|id| !id.is_empty()));
}

/// A `RUST_LOG` the server cannot read stops the start with a message.
#[test]
fn an_unreadable_rust_log_stops_the_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_sse_notify"))
        .env("RUST_LOG", "sse_notify=loud")
        .env("CONFIG_FILE", "/dev/null")
        .env("METRICS_ADDR", "")
        .output()
        .expect("run the server binary");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("RUST_LOG"), "{stderr}");
}
