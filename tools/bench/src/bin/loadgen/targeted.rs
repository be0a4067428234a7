//! `targeted`: N idle clients (held by holder processes), plus one probe
//! user sent `--rate` live events per second through the per-user send,
//! on `--addr` or, with several server processes, on `--send-addr`; the
//! probe's delivery latency.

use std::sync::Arc;
use std::time::Duration;

use crate::holders::Holders;
use crate::http::{now_micros, request, session};
use crate::streams::{Sink, StreamRequest, latency_summary, open_stream};
use crate::{Args, settle};

pub(crate) async fn targeted(a: &Args) -> Result<serde_json::Value, String> {
    if !a.ours() {
        return Err("targeted: the baseline cannot target a user".into());
    }
    let a = &a.with_sessions(a.clients).await?;
    let holders = Holders::spawn(a, 0, a.clients, a.processes).await?;
    let probe = session(a.addr, "benchprobe").await?;
    let sink = Arc::new(Sink::default());
    let req = StreamRequest {
        addr: a.addr,
        path: "/api/sse",
        cookies: Arc::new(vec![probe.clone()]),
        reuse: false,
        last_event_id: None,
    };
    let conn = open_stream(&req, a.clients, sink.clone()).await?;
    let headers = format!("Content-Type: application/json\r\nCookie: {probe}\r\n");
    let to = a.send_addr.unwrap_or(a.addr);
    let events = a.rate as u64 * a.duration;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / a.rate.max(1) as f64));
    for _ in 0..events {
        tick.tick().await;
        // A live event: the latency of the send path (and of the bus), not
        // of the inbox's commit.
        let body = format!(
            r#"{{"user":"benchprobe","event":"bench","message":"t={};"}}"#,
            now_micros()
        );
        let (status, text) = request(to, "POST", "/api/sse/test", &headers, &body).await?;
        if status != 200 {
            return Err(format!("targeted send: {status}: {text:.200}"));
        }
    }
    settle(&sink, events).await;
    let mut lat = std::mem::take(&mut *sink.latencies.lock().await);
    lat.sort_unstable();
    drop(conn);
    holders.release();
    Ok(serde_json::json!({
        "processes": a.processes,
        "sent_to": to.to_string(),
        "events": events,
        "delivered": lat.len(),
        "latency_ms": latency_summary(&lat),
    }))
}
