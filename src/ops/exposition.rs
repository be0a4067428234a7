//! `GET /metrics` in the Prometheus text format (0.0.4), one registry
//! per server (tests run several servers in one process), on its own
//! address and/or on the main one behind a bearer token.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry as Prometheus;
use tokio::net::TcpListener;

use super::Ops;
use super::db_timing::DbTimings;
use crate::error::{AppError, ErrorKind};
use crate::sse::Notifier;
use crate::sse::metrics::gauge;

/// The series of one server, ready to encode.
#[derive(Clone)]
pub struct Exposition {
    registry: Arc<Prometheus>,
}

impl Exposition {
    /// The SSE layer's series, the app's database timings, the process's,
    /// and whether it is draining.
    pub fn new(notifier: &Notifier, timings: &DbTimings, draining: Arc<AtomicBool>) -> Self {
        let mut registry = Prometheus::default();
        timings.register(&mut registry);
        notifier.register_metrics(&mut registry);
        registry.register_collector(Box::new(Process { draining }));
        Exposition {
            registry: Arc::new(registry),
        }
    }

    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The response to a scrape.
fn scrape(exposition: Option<&Exposition>) -> Response {
    let Some(exposition) = exposition else {
        return AppError::new(ErrorKind::NotFound, "metrics_off", "metrics are turned off")
            .into_response();
    };
    match exposition.encode() {
        Ok(text) => {
            let mut response = text.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(prometheus_text::CONTENT_TYPE),
            );
            response
        }
        Err(_) => AppError::internal("the metrics could not be encoded").into_response(),
    }
}

/// `/metrics` on the main address: only with `metrics.token`, and only
/// to a request that carries it.
pub async fn with_token(State(ops): State<Ops>, headers: HeaderMap) -> Response {
    let Some(token) = ops.token() else {
        return AppError::new(
            ErrorKind::NotFound,
            "not_found",
            "metrics are not served on this address (see metrics.addr and metrics.token)",
        )
        .into_response();
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(token.trim())
        });
    if !given.is_some_and(|given| same(given.as_bytes(), token.as_bytes())) {
        let mut response = AppError::new(
            ErrorKind::Unauthenticated,
            "metrics_token",
            "GET /metrics needs `Authorization: Bearer <metrics.token>`",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    scrape(ops.exposition())
}

/// Compares without stopping at the first difference (the token's
/// length is not secret; its bytes are).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Binds `metrics.addr`. When that is the default address (not asked
/// for) and already taken, typically by another server process on this
/// host started as the README says, logs a warning and returns `None`:
/// this process serves no separate `/metrics`, rather than refusing to
/// start. An address that was asked for must be free.
pub async fn bind(addr: SocketAddr, is_default: bool) -> std::io::Result<Option<TcpListener>> {
    match TcpListener::bind(addr).await {
        Ok(listener) => Ok(Some(listener)),
        Err(e) if is_default && e.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::warn!(%addr,
                "the default metrics address is in use (another server process on this host?): \
                 this process serves no separate /metrics; give each process its own with \
                 METRICS_ADDR=127.0.0.1:9465 (…), or none with METRICS_ADDR=");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Serves `/metrics` (and nothing else) on `listener`, without a token,
/// until `stop` resolves.
pub async fn serve(
    listener: TcpListener,
    ops: Ops,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(ops): State<Ops>| async move { scrape(ops.exposition()) }),
        )
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(ops);
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
}

/// Process figures, read at each scrape (Linux `/proc`).
struct Process {
    draining: Arc<AtomicBool>,
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process").finish_non_exhaustive()
    }
}

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        gauge(
            &mut encoder,
            "sse_draining",
            "1 from SIGTERM on: /readyz answers 503 and streams are being ended",
            i64::from(self.draining.load(Ordering::Relaxed)),
        )?;
        if let Some(rss) = resident_bytes() {
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory of this process",
                rss,
            )?;
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Open file descriptors of this process",
                fds.count() as i64,
            )?;
        }
        Ok(())
    }
}

fn resident_bytes() -> Option<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page as i64)
}
