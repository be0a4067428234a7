//! What the SSE layer measures, in Prometheus form (see [`crate::Notifier::register_metrics`]).
//!
//! Two kinds of figure. What the registry counts anyway (open streams,
//! connects, disconnects by reason, events written, refusals, replays,
//! resets) is read at scrape time by a collector: nothing is added to the
//! hot path for it. What only metrics need (sends by target kind, send
//! latency, bus lag and reconnects, database latency, inbox rows) lives in
//! [`SseMetrics`], which exists only with metrics enabled: turned off, the
//! hot path skips it entirely.
//!
//! Every label value comes from a fixed set in this code, never from a
//! request or a user, so the number of series cannot grow with traffic.

use std::fmt;
use std::time::{Duration, Instant};

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry as Prometheus;

mod labels;

pub use labels::{BusLink, DbOp, Refusal, ReplaySource, TargetKind};

use super::target::Target;

/// Latency buckets, in seconds: 50 µs to 10 s.
const LATENCY_BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];

type Labels = [(&'static str, &'static str); 1];
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// The figures only metrics need. Each labelled child is resolved once,
/// here: counting is an atomic add or one histogram observation, with no
/// label lookup.
pub struct SseMetrics {
    published_family: Family<Labels, Counter>,
    published: [Counter; 5],
    send_seconds: Histogram,
    bus_lag_seconds: Histogram,
    reconnects_family: Family<Labels, Counter>,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // used by the Redis bus
    bus_reconnects: [Counter; 2],
    db_family: Histograms,
    db_seconds: [Histogram; 4],
    inbox_rows: Counter,
    bus_skipped: Counter,
    bus_read: Counter,
}

impl Default for SseMetrics {
    fn default() -> Self {
        let published_family = Family::<Labels, Counter>::default();
        let published = TargetKind::ALL
            .map(|k| published_family.get_or_create_owned(&[("target", k.as_str())]));
        let reconnects_family = Family::<Labels, Counter>::default();
        let bus_reconnects = ["publisher", "reader"]
            .map(|link| reconnects_family.get_or_create_owned(&[("link", link)]));
        let db_family = Histograms::new_with_constructor(latency_histogram);
        let db_seconds = DbOp::ALL.map(|op| db_family.get_or_create_owned(&[("op", op.as_str())]));
        SseMetrics {
            published_family,
            published,
            send_seconds: latency_histogram(),
            bus_lag_seconds: latency_histogram(),
            reconnects_family,
            bus_reconnects,
            db_family,
            db_seconds,
            inbox_rows: Counter::default(),
            bus_skipped: Counter::default(),
            bus_read: Counter::default(),
        }
    }
}

/// A histogram with the layer's latency buckets (50 µs to 10 s), for a host
/// that wants its own series to read the same way.
pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl fmt::Debug for SseMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseMetrics").finish_non_exhaustive()
    }
}

impl SseMetrics {
    /// One send by this process (whichever process delivers it).
    pub(crate) fn published(&self, target: &Target) {
        self.published[TargetKind::of(target) as usize].inc();
    }

    /// From a send's start to its event queued for every receiver here.
    pub(crate) fn sent(&self, started: Instant) {
        self.send_seconds.observe(started.elapsed().as_secs_f64());
    }

    /// From an entry's append (its id's time, on Redis's clock) to this
    /// process reading it.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // used by the Redis bus
    pub(crate) fn bus_lag(&self, appended_ms: u64) {
        let now = crate::clock::unix_millis_now();
        let lag = Duration::from_millis(now.saturating_sub(appended_ms));
        self.bus_lag_seconds.observe(lag.as_secs_f64());
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // used by the Redis bus
    pub(crate) fn bus_entry_skipped(&self) {
        self.bus_skipped.inc();
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // used by the Redis bus
    pub(crate) fn bus_entry_read(&self) {
        self.bus_read.inc();
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // used by the Redis bus
    pub(crate) fn bus_reconnected(&self, link: BusLink) {
        self.bus_reconnects[link as usize].inc();
    }

    pub fn db(&self, op: DbOp, took: Duration) {
        self.db_seconds[op as usize].observe(took.as_secs_f64());
    }

    #[cfg_attr(not(feature = "inbox"), allow(dead_code))] // used by the inbox
    pub(crate) fn inbox_rows_written(&self, rows: u64) {
        self.inbox_rows.inc_by(rows);
    }
}

/// Times `work` as `op` when there are metrics.
pub async fn timed<T>(metrics: Option<&SseMetrics>, op: DbOp, work: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let out = work.await;
    if let Some(metrics) = metrics {
        metrics.db(op, started.elapsed());
    }
    out
}

/// Adds [`SseMetrics`]'s series to `into` (the registry's own counts are
/// a collector's, registered with them by `Notifier::register_metrics`).
pub(crate) fn register_series(into: &mut Prometheus, metrics: &SseMetrics) {
    let sse = into.sub_registry_with_prefix("sse");
    sse.register(
        "events_published",
        "Sends made by this process, by target kind",
        metrics.published_family.clone(),
    );
    sse.register(
        "send_seconds",
        "From a send to its event queued for every receiver in this process",
        metrics.send_seconds.clone(),
    );
    sse.register(
        "bus_lag_seconds",
        "From an entry's append in Redis (its id's time) to this process reading it",
        metrics.bus_lag_seconds.clone(),
    );
    sse.register(
        "bus_entries_skipped",
        "Entries of the shared stream the bus could not read (foreign or malformed) and stepped over",
        metrics.bus_skipped.clone(),
    );
    sse.register(
        "bus_entries_read",
        "Entries of the shared stream this process read (with `bus.follow = own`, only those its clients may need)",
        metrics.bus_read.clone(),
    );
    sse.register(
        "bus_reconnects",
        "Connections to Redis made again after one was lost, by link",
        metrics.reconnects_family.clone(),
    );
    sse.register(
        "db_query_seconds",
        "Database operations, by kind",
        metrics.db_family.clone(),
    );
    sse.register(
        "inbox_rows_written",
        "Inbox rows committed (one per recipient user, or one per broadcast)",
        metrics.inbox_rows.clone(),
    );
}

pub(crate) fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// One counter family: a sample per label set, under one HELP and TYPE.
pub(crate) fn counters<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, u64)>,
) -> Result<(), fmt::Error> {
    let kind = ConstCounter::new(0u64).metric_type();
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Writes one gauge read at scrape time, from a collector (the host's
/// own collectors may use it too).
pub fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}
