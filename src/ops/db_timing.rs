//! How long the app's own database work takes: sign-in sessions and the
//! readiness check, as `db_query_seconds{op}` (the SSE layer times its
//! inbox as `sse_db_query_seconds`).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry as Prometheus;

use crate::sse::metrics::latency_histogram;

/// The app's timed database operations: the `op` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbOp {
    /// Loading a sign-in session (most requests).
    SessionLoad,
    /// Saving or deleting a session.
    SessionSave,
    /// `/readyz`'s check.
    Ping,
}

impl DbOp {
    const ALL: [DbOp; 3] = [DbOp::SessionLoad, DbOp::SessionSave, DbOp::Ping];

    fn as_str(self) -> &'static str {
        match self {
            DbOp::SessionLoad => "session_load",
            DbOp::SessionSave => "session_save",
            DbOp::Ping => "ping",
        }
    }
}

type Labels = [(&'static str, &'static str); 1];

/// The series, cheap to clone; each child resolved once.
#[derive(Clone)]
pub struct DbTimings {
    inner: Arc<Inner>,
}

struct Inner {
    family: Family<Labels, Histogram, fn() -> Histogram>,
    by_op: [Histogram; 3],
}

impl Default for DbTimings {
    fn default() -> Self {
        let family =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let by_op = DbOp::ALL.map(|op| family.get_or_create_owned(&[("op", op.as_str())]));
        DbTimings {
            inner: Arc::new(Inner { family, by_op }),
        }
    }
}

impl std::fmt::Debug for DbTimings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbTimings").finish_non_exhaustive()
    }
}

impl DbTimings {
    pub fn register(&self, into: &mut Prometheus) {
        into.register(
            "db_query_seconds",
            "The app's own database operations (sessions, readiness), by kind",
            self.inner.family.clone(),
        );
    }

    fn observe(&self, op: DbOp, started: Instant) {
        self.inner.by_op[op as usize].observe(started.elapsed().as_secs_f64());
    }
}

/// Times `work` as `op` when there are timings.
pub async fn timed<T>(timings: Option<&DbTimings>, op: DbOp, work: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let out = work.await;
    if let Some(timings) = timings {
        timings.observe(op, started);
    }
    out
}
