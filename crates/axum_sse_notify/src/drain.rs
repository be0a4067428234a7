//! Ending every stream of a process without a reconnect storm, for a
//! rolling deploy.
//!
//! New streams are refused (503 with `Retry-After`) and the open ones are
//! ended in batches every [`TICK`], spread evenly over a window. Each is
//! told to reconnect after a jittered delay (`retry:` and an `sse-drain`
//! event), so the reconnects of 15 000 streams are spread over the window
//! rather than landing in one second. With the Redis bus, they resume on
//! another process with `Last-Event-ID` and miss nothing.

use std::sync::Arc;
use std::time::Duration;

use crate::registry::{ClientLink, Registry};

/// How often a batch of streams is ended.
pub const TICK: Duration = Duration::from_millis(100);

/// How long a drained stream's last frame may take to be written before
/// its socket is cut (a client that stopped reading would otherwise hold
/// the shutdown until the server's own timeout).
pub const FLUSH: Duration = Duration::from_secs(1);

/// Refuses new streams and ends the open ones over `window`; returns once
/// every stream has been told to go, at most `window + FLUSH` (less once
/// no stream is left). Returns how many it ended.
pub async fn drain(registry: &Arc<Registry>, window: Duration) -> usize {
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
    ended
}

/// The streams a drain ended. Dropped (at the end of the drain, or when
/// the drain is cut short), their sockets are cut if still stuck.
struct Drained(Vec<Arc<ClientLink>>);

impl Drop for Drained {
    fn drop(&mut self) {
        for link in &self.0 {
            link.abort_socket();
        }
    }
}
