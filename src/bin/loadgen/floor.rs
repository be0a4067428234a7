//! The kernel floor of a broadcast: plain blocking 1 KiB `write()`s to N
//! connected loopback sockets, no server involved.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

pub fn floor(n: usize) -> Result<serde_json::Value, String> {
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
