//! The drain on SIGTERM: a rolling deploy without a reconnect storm.
//!
//! 1. `/readyz` answers 503 at once, so the load balancer stops sending
//!    new clients here.
//! 2. For `server.drain_delay`, nothing else changes (the balancer needs
//!    a few probes to notice).
//! 3. New streams are refused (503 with `Retry-After`), and the open ones
//!    are ended in batches every [`TICK`], spread evenly over
//!    `server.drain_window`. Each is told to reconnect after a jittered
//!    `retry:`, so the reconnects of 15 000 streams are spread over the
//!    window rather than landing in one second. With the Redis bus, they
//!    resume on another instance with `Last-Event-ID` and miss nothing.
//!
//! Then the server stops as on any shutdown.

use std::time::Duration;

use super::Ops;

/// How often a batch of streams is ended.
pub const TICK: Duration = Duration::from_millis(100);

/// Runs the drain; returns once every stream has been told to go.
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
    let mut ended = 0;
    for tick in 0..ticks {
        // What is left, shared over the ticks that are left: streams that
        // end by themselves meanwhile shrink the later batches.
        let batch = registry.len().div_ceil(ticks - tick);
        ended += registry.drain(batch);
        tokio::time::sleep_until(started + TICK * (tick as u32 + 1)).await;
    }
    ended += registry.drain(usize::MAX);
    tracing::info!(streams, ended, "drained");
}
