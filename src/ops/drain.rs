//! The drain on SIGTERM: a rolling deploy without a reconnect storm.
//!
//! 1. `/readyz` answers 503 at once, so the load balancer stops sending
//!    new clients here.
//! 2. For `server.drain_delay`, nothing else changes (the balancer needs
//!    a few probes to notice).
//! 3. New streams are refused (503 with `Retry-After`), and the open ones
//!    are ended in batches every [`TICK`], spread evenly over
//!    `server.drain_window`. Each is told to reconnect after a jittered
//!    delay (`retry:` and an `sse-drain` event), so the reconnects of
//!    15 000 streams are spread over the window rather than landing in one
//!    second. With the Redis bus, they resume on another instance with
//!    `Last-Event-ID` and miss nothing.
//!
//! Then the server stops as on any shutdown.

use std::sync::Arc;
use std::time::Duration;

use super::Ops;
use crate::sse::registry::ClientLink;

/// How often a batch of streams is ended.
pub const TICK: Duration = Duration::from_millis(100);

/// How long a drained stream's last frame may take to be written before
/// its socket is cut (a client that stopped reading would otherwise hold
/// the shutdown for `server.shutdown_timeout`).
pub const FLUSH: Duration = Duration::from_secs(1);

/// Runs the drain; returns once every stream has been told to go. At
/// most `delay + window + FLUSH` (less once no stream is left).
pub async fn run(ops: &Ops, delay: Duration, window: Duration) {
    ops.start_draining();
    let registry = ops.notifier().registry().clone();
    tracing::info!(
        streams = registry.len(),
        ?delay,
        ?window,
        "draining: /readyz answers 503; streams end after the delay"
    );
    tokio::time::sleep(delay).await;
    registry.stop_admitting();
    let streams = registry.len();
    let ticks = (window.as_millis() / TICK.as_millis()).max(1) as usize;
    let started = tokio::time::Instant::now();
    let mut drained = Drained(Vec::with_capacity(streams));
    for tick in 0..ticks {
        if registry.is_empty() {
            break;
        }
        // What is left, shared over the ticks that are left: streams that
        // end by themselves meanwhile shrink the later batches.
        let batch = registry.len().div_ceil(ticks - tick);
        drained.0.extend(registry.drain(batch));
        tokio::time::sleep_until(started + TICK * (tick as u32 + 1)).await;
    }
    drained.0.extend(registry.drain(usize::MAX));
    let ended = drained.0.len();
    // A link only this list holds belongs to a stream that is gone.
    let flushed_by = tokio::time::Instant::now() + FLUSH;
    while drained.0.iter().any(|link| Arc::strong_count(link) > 1)
        && tokio::time::Instant::now() < flushed_by
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!(streams, ended, "drained");
}

/// The streams a drain ended. Dropped (at the end of the drain, or when a
/// second signal cuts it short), their sockets are cut if still stuck.
struct Drained(Vec<Arc<ClientLink>>);

impl Drop for Drained {
    fn drop(&mut self) {
        for link in &self.0 {
            link.abort_socket();
        }
    }
}
