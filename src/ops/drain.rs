//! The drain on SIGTERM: a rolling deploy without a reconnect storm.
//!
//! 1. `/readyz` answers 503 at once, so the load balancer stops sending
//!    new clients here.
//! 2. For `server.drain_delay`, nothing else changes (the balancer needs
//!    a few probes to notice).
//! 3. The SSE layer's [`drain`](crate::sse::drain): new streams are
//!    refused and the open ones ended in batches spread evenly over
//!    `server.drain_window`, each told a jittered reconnect delay.
//!
//! Then the server stops as on any shutdown.

use std::time::Duration;

use super::Ops;

pub use crate::sse::drain::{FLUSH, TICK};

/// Runs the drain; returns once every stream has been told to go. At
/// most `delay + window + FLUSH` (less once no stream is left).
pub async fn run(ops: &Ops, delay: Duration, window: Duration) {
    ops.start_draining();
    let registry = ops.notifier().registry().clone();
    let streams = registry.len();
    tracing::info!(
        streams,
        ?delay,
        ?window,
        "draining: /readyz answers 503; streams end after the delay"
    );
    tokio::time::sleep(delay).await;
    let ended = crate::sse::drain::drain(&registry, window).await;
    tracing::info!(streams, ended, "drained");
}
