//! The kernel floor of a broadcast: plain blocking 1 KiB `write()`s to N
//! connected loopback sockets, no server involved. The other ends are held
//! by a child process (`--scenario hold-raw`): one process cannot hold
//! both ends of 10 000 connections within the open-files limit.

use std::io::Write;
use std::time::Instant;

use crate::Args;
use crate::holders::Holders;

pub async fn floor(a: &Args) -> Result<serde_json::Value, String> {
    let n = a.clients;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // Accept while the peers connect: the backlog is shorter than N.
    let accepting = tokio::task::spawn_blocking(move || {
        let mut servers = Vec::with_capacity(n);
        for _ in 0..n {
            let (s, _) = listener.accept().map_err(|e| e.to_string())?;
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            servers.push(s);
        }
        Ok::<_, String>(servers)
    });
    let peers = Args { addr, ..a.clone() };
    let holders = Holders::spawn_scenario(&peers, "hold-raw", 0, n, 1).await?;
    let mut servers = accepting.await.map_err(|e| e.to_string())??;
    let median = tokio::task::spawn_blocking(move || {
        let payload = vec![b'x'; 1024];
        let mut runs = Vec::new();
        // 5 KiB per socket in all: within the receive buffers, so no
        // write waits for the peer to read.
        for _ in 0..5 {
            let started = Instant::now();
            for s in servers.iter_mut() {
                s.write_all(&payload).map_err(|e| e.to_string())?;
            }
            runs.push(started.elapsed());
        }
        runs.sort();
        Ok::<_, String>(runs[runs.len() / 2])
    })
    .await
    .map_err(|e| e.to_string())??;
    holders.release();
    Ok(serde_json::json!({
        "scenario": "floor",
        "sockets": n,
        "write_loop_ms_median": median.as_secs_f64() * 1e3,
        "per_write_us": median.as_secs_f64() * 1e6 / n as f64,
    }))
}
