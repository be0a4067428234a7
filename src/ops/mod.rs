//! Running the server in production: health and readiness for load
//! balancers, Prometheus metrics, logging, the drain on SIGTERM, and the
//! watcher that applies role changes to open streams.
//!
//! Its routes are mounted outside the session and identity layers: a
//! probe needs no session and never touches the session store.

pub mod db_timing;
pub mod drain;
pub mod exposition;
pub mod health;
pub mod logging;
pub mod request_span;
pub mod roles;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::routing::get;
use sqlx::AnyPool;

use crate::sse::Notifier;
use db_timing::DbTimings;

/// What the probes and `/metrics` read. Cheap to clone.
#[derive(Clone)]
pub struct Ops {
    inner: Arc<Inner>,
}

struct Inner {
    notifier: Notifier,
    pool: AnyPool,
    draining: Arc<AtomicBool>,
    /// `None`: metrics are off.
    metrics: Option<exposition::Exposition>,
    timings: Option<DbTimings>,
    /// `/metrics` on the main address, to this bearer token.
    token: Option<String>,
    /// `/readyz`'s last database check (see `health`).
    db_check: DbCheck,
}

type DbCheck = tokio::sync::Mutex<Option<(std::time::Instant, Result<(), String>)>>;

impl Ops {
    /// With `metrics` on, the series of `notifier`'s registry and bus.
    /// `timings`: the app's database timings (the sessions' and the
    /// readiness check's), also exposed when metrics are on.
    pub fn new(
        notifier: Notifier,
        pool: AnyPool,
        timings: Option<DbTimings>,
        token: Option<String>,
    ) -> Self {
        let draining = Arc::new(AtomicBool::new(false));
        let metrics = timings
            .as_ref()
            .map(|t| exposition::Exposition::new(&notifier, t, draining.clone()));
        Ops {
            inner: Arc::new(Inner {
                notifier,
                pool,
                draining,
                metrics,
                timings,
                token,
                db_check: DbCheck::default(),
            }),
        }
    }

    /// From now on `/readyz` answers 503 (the process is going away).
    pub fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    pub fn notifier(&self) -> &Notifier {
        &self.inner.notifier
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.inner.pool
    }

    pub(crate) fn timings(&self) -> Option<&DbTimings> {
        self.inner.timings.as_ref()
    }

    pub(crate) fn exposition(&self) -> Option<&exposition::Exposition> {
        self.inner.metrics.as_ref()
    }

    pub(crate) fn db_check(&self) -> &DbCheck {
        &self.inner.db_check
    }

    pub(crate) fn token(&self) -> Option<&str> {
        self.inner.token.as_deref()
    }
}

/// `GET /healthz`, `GET /readyz`, and `GET /metrics` behind the bearer
/// token when one is configured (404 otherwise).
pub fn routes<S: Clone + Send + Sync + 'static>(ops: Ops) -> Router<S> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(exposition::with_token))
        .with_state(ops)
}
