//! The registry's and the bus's figures, read at each scrape: what they
//! count anyway costs the hot path nothing more.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry as Prometheus;

use crate::bus::Bus;
use crate::metrics::{Refusal, ReplaySource, counter, counters, gauge, register_series};
use crate::registry::{DisconnectReason, Registry, ResetReason};

/// Adds the layer's series to `into`: the registry's counts and the
/// bus's state (read at each scrape) and, when the registry keeps them,
/// the figures of [`crate::metrics::SseMetrics`].
pub(crate) fn register(into: &mut Prometheus, registry: &Arc<Registry>, bus: &Bus) {
    into.register_collector(Box::new(Live {
        registry: registry.clone(),
        bus: bus.clone(),
    }));
    if let Some(metrics) = registry.metrics() {
        register_series(into, metrics);
    }
}

/// The registry's own counts, read at scrape time.
struct Live {
    registry: Arc<Registry>,
    bus: Bus,
}

impl fmt::Debug for Live {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Live").finish_non_exhaustive()
    }
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let counts = self.registry.counts();
        gauge(
            &mut encoder,
            "sse_streams_open",
            "Event streams open in this process",
            counts.open as i64,
        )?;
        counter(
            &mut encoder,
            "sse_connects",
            "Event streams admitted",
            counts.connects,
        )?;
        counters(
            &mut encoder,
            "sse_disconnects",
            "Event streams ended, by reason",
            DisconnectReason::ALL
                .map(|r| ([("reason", r.label())], counts.disconnects[r as usize])),
        )?;
        counters(
            &mut encoder,
            "sse_refusals",
            "Requests refused, by cause and status",
            Refusal::ALL.map(|r| {
                let labels = [("cause", r.as_str()), ("status", r.status())];
                (labels, counts.refusals[r.index()])
            }),
        )?;
        counter(
            &mut encoder,
            "sse_events_delivered",
            "Events written to streams (one per receiver)",
            counts.delivered,
        )?;
        counter(
            &mut encoder,
            "sse_queue_overflows",
            "Streams ended because they fell `sse.queue_len` events behind",
            counts.disconnects[DisconnectReason::QueueOverflow as usize],
        )?;
        counters(
            &mut encoder,
            "sse_replayed_events",
            "Events sent again to a resuming or fresh stream, by source",
            ReplaySource::ALL.map(|r| ([("source", r.as_str())], counts.replayed[r as usize])),
        )?;
        counters(
            &mut encoder,
            "sse_resets",
            "`sse-reset` events sent, by reason",
            ResetReason::ALL.map(|r| ([("reason", r.as_str())], counts.resets[r as usize])),
        )?;
        let status = self.bus.status();
        gauge(
            &mut encoder,
            "sse_bus_connected",
            "1 when the bus works (always, in-process; with Redis, both links up)",
            i64::from(status.connected),
        )?;
        gauge(
            &mut encoder,
            "sse_bus_queue_depth",
            "Sends waiting for the bus's publisher",
            self.bus.queue_depth() as i64,
        )?;
        gauge(
            &mut encoder,
            "sse_bus_followed_users",
            "Users whose events this process reads (`bus.follow = own`: those it holds a stream of, and for `bus.unfollow_after` after)",
            self.bus.followed_users() as i64,
        )?;
        Ok(())
    }
}
