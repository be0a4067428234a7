//! The HTTP server: app state, router, and a graceful shutdown.
//!
//! Kept out of `main.rs` so that integration tests start exactly the server
//! that ships, on an ephemeral port.

pub mod assets;
pub mod openapi;
pub mod page_body;
pub mod remote_addr;
pub mod request_body;
pub mod request_line;

use std::future::Future;
use std::io;

use axum::Router;
use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use leptos_axum::{LeptosRoutes, generate_route_list};
use tokio::net::TcpListener;

use crate::app::{App, shell};
use crate::auth::middleware::{COOKIE_NAME, identify, refuse_cross_site, secure_cookie};
use crate::auth::rate_limit::SendLimit;
use crate::auth::{Auth, SecureCookie};
use crate::config::{Config, ServerConfig};
use crate::http::{self, ServeOptions, WatchedListener};
use crate::ops::db_timing::DbTimings;
use crate::ops::{self, Ops};
use crate::sse::{self, Notifier};
use crate::store::sessions::DbSessionStore;
use crate::store::{Db, StoreError};

use page_body::finish_abandoned_pages;
use remote_addr::{TrustedProxies, identify_remote_addr};
use request_body::{BodyLimits, limit_body};
use request_line::check_request_line;

/// After a shutdown signal, the process exits this long after
/// `server.shutdown_timeout` at the latest, whatever is still running.
pub const EXIT_MARGIN: std::time::Duration = std::time::Duration::from_secs(3);

/// How often expired sessions are deleted from the database.
const SESSION_CLEANUP_PERIOD: std::time::Duration = std::time::Duration::from_secs(600);

/// Everything handlers share. Cheap to clone: each field is an `Arc` inside.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub notifier: Notifier,
    pub auth: Auth,
    /// Per-user send rate (server functions read it from context).
    pub sends: SendLimit,
}

/// How the server was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// End streams now (SIGINT, tests).
    Now,
    /// Drain first (SIGTERM): see [`crate::ops::drain`].
    Drain,
}

impl From<()> for Stop {
    fn from((): ()) -> Self {
        Stop::Now
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Bus(#[from] sse::BusError),
    #[error("cannot start service mode: {0}")]
    Service(#[from] sse::ServiceError),
    #[error("cannot listen on {addr} (metrics.addr / METRICS_ADDR): {error}")]
    MetricsAddr {
        addr: std::net::SocketAddr,
        error: io::Error,
    },
}

/// The full router: the SSE routes, Leptos pages and server functions,
/// static files, 404s; sessions, identity and the cross-site check around
/// them; outermost, the checks every request must pass (request line,
/// body size and time), and the client's address.
pub fn router(
    state: AppState,
    sessions: DbSessionStore,
    server: &ServerConfig,
    ops: Ops,
) -> Router {
    use axum::middleware::{from_fn, from_fn_with_state};
    use tower_sessions::cookie::SameSite;
    use tower_sessions::{Expiry, SessionManagerLayer};

    let routes = generate_route_list(App);
    let options = state.leptos_options.clone();
    let auth = state.auth.clone();
    // Server functions and pages reach the notifier and auth through context.
    let context = {
        let notifier = state.notifier.clone();
        let auth = auth.clone();
        let sends = state.sends.clone();
        move || {
            leptos::prelude::provide_context(notifier.clone());
            leptos::prelude::provide_context(auth.clone());
            leptos::prelude::provide_context(sends.clone());
        }
    };
    let ttl =
        time::Duration::try_from(auth.config().session_ttl).unwrap_or(time::Duration::days(7));
    let session_layer = SessionManagerLayer::new(sessions)
        .with_name(COOKIE_NAME)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(auth.config().secure_cookie == SecureCookie::Always)
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(ttl));
    let app = Router::new()
        .merge(sse::routes::<AppState>())
        .leptos_routes_with_context(&state, routes, context.clone(), {
            let options = options.clone();
            move || shell(options.clone())
        });
    let hashed = options.hash_files;
    assets::serve_static(app, &options, hashed, context, shell)
        .layer(from_fn_with_state(auth.clone(), identify))
        .layer(session_layer)
        .layer(from_fn_with_state(auth, secure_cookie))
        .layer(from_fn(refuse_cross_site))
        // Probes, metrics and the API's description: no session, no identity.
        .merge(ops::routes(ops))
        .route(openapi::PATH, axum::routing::get(openapi::serve))
        .layer(from_fn(finish_abandoned_pages))
        .layer(from_fn_with_state(
            TrustedProxies(server.trusted_proxies.clone().into()),
            identify_remote_addr,
        ))
        .layer(from_fn_with_state(
            BodyLimits {
                max: server.max_body,
                timeout: server.body_timeout,
            },
            limit_body,
        ))
        .layer(from_fn(check_request_line))
        .layer(from_fn(assets::private_by_default))
        .layer(from_fn(ops::request_span::request_span))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then gives open requests
/// `server.shutdown_timeout` to finish.
pub async fn run<S: Into<Stop>>(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = S> + Send + 'static,
) -> Result<(), ServeError> {
    let addr = listener.local_addr()?;
    let grace = config.server.shutdown_timeout;
    let db = Db::connect(config.database_url.as_deref(), &config.data_dir).await?;
    let pool = db.pool().clone();
    let notifier = Notifier::start_with_inbox(
        config.sse.clone(),
        &config.bus,
        pool.clone(),
        config.inbox.clone(),
    )?;
    // Other services publish with service tokens; clients without our
    // cookie stream with stream tokens; the demo's rooms are private.
    let service = sse::Service::start(pool.clone(), notifier.bus(), config.service.clone()).await?;
    let notifier = notifier
        .with_service(service)
        .with_channel_policy(crate::auth::channels::DemoChannels::new(db.clone()));
    let timings = config.metrics.enabled.then(DbTimings::default);
    let auth = Auth::new(db.clone(), config.auth.clone());
    // What stream connects remember of a sign-in is forgotten when its
    // kick arrives (from any process), and not used while kicks from
    // other processes may not arrive.
    {
        let remembered = auth.stream_sessions().clone();
        notifier
            .registry()
            .on_session_end(move |handle| remembered.forget_handle(handle));
        let bus = notifier.bus().clone();
        auth.stream_sessions().trust_while(move || bus.connected());
    }
    let sessions = DbSessionStore::new(db.clone())
        .timed_by(timings.clone())
        .forgetting_in(auth.stream_sessions().clone());
    let cleanup = sessions.spawn_cleanup(SESSION_CLEANUP_PERIOD);
    let mut maintenance = Vec::new();
    if let Ok(inbox) = notifier.inbox() {
        // What a previous run committed but did not publish goes out
        // before any stream opens (and stays in the inbox for later ones).
        if let Err(e) = inbox.relay_once().await {
            tracing::warn!(error = %e, "inbox relay at start failed; it retries on its interval");
        }
        maintenance = inbox.spawn_maintenance();
    }
    let mut leptos_options = config.leptos;
    if leptos_options.hash_files && !assets::hash_file_present(&leptos_options.hash_file) {
        tracing::info!(
            "no {} beside the server binary: the bundle is served under its plain names",
            leptos_options.hash_file
        );
        leptos_options.hash_files = false;
    }
    let ops = Ops::new(
        notifier.clone(),
        pool.clone(),
        timings,
        config.metrics.token.clone(),
    );
    let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    if let (true, Some(addr)) = (config.metrics.enabled, config.metrics.addr)
        && let Some(listener) = ops::exposition::bind(addr, config.metrics.addr_is_default)
            .await
            .map_err(|error| ServeError::MetricsAddr { addr, error })?
    {
        let bound = listener.local_addr()?;
        tracing::info!(addr = %bound, "metrics on http://{bound}/metrics");
        let stopped = async move {
            let _ = metrics_stopped.await;
        };
        tokio::spawn(ops::exposition::serve(listener, ops.clone(), stopped));
    }
    // Grants and revokes reach this process's open streams.
    // Its starting point is read now, before any stream is served: a
    // change made from here on is applied.
    maintenance.push(
        ops::roles::start(
            db.clone(),
            notifier.registry().clone(),
            auth.stream_sessions().clone(),
        )
        .await,
    );
    // Presence: shared with the other processes, joins and leaves announced.
    maintenance.push(notifier.presence().spawn());
    let state = AppState {
        leptos_options,
        notifier: notifier.clone(),
        auth,
        sends: send_limit(&config.server, &config.bus),
    };
    let app = router(state, sessions, &config.server, ops.clone());
    let listener = WatchedListener::new(listener, config.server.client_timeout);

    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let (drain_delay, drain_window) = (config.server.drain_delay, config.server.drain_window);
    let signal = async move {
        if shutdown.await.into() == Stop::Drain {
            tokio::select! {
                () = ops::drain::run(&ops, drain_delay, drain_window) => {}
                _ = shutdown_signal() => tracing::warn!("second signal: the drain is cut short"),
            }
        }
        tracing::info!("shutdown requested; closing event streams, finishing open requests");
        // Event streams never end by themselves: end them, so that the
        // graceful shutdown below can complete.
        notifier.shutdown();
        let _ = stopping_tx.send(());
    };
    tracing::info!(%addr, "listening on http://{addr}");
    let options = ServeOptions {
        header_timeout: config.server.header_timeout,
        direct: config.server.direct_responses,
        ..ServeOptions::default()
    };
    let server = http::serve(listener, app, options, signal);
    let mut server = std::pin::pin!(server);

    let result = tokio::select! {
        () = &mut server => Ok(()),
        _ = async {
            // Only starts counting once the signal has arrived.
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {
            tracing::warn!(?grace, "requests still open after the shutdown timeout; exiting anyway");
            Ok(())
        }
    };
    let _ = metrics_stop.send(());
    cleanup.abort();
    for task in maintenance {
        task.abort();
    }
    // Close database connections cleanly rather than leaving them to the
    // operating system (Postgres logs, and refuses to drop, live sessions).
    if tokio::time::timeout(std::time::Duration::from_secs(2), pool.close())
        .await
        .is_err()
    {
        tracing::warn!("database connections did not close within 2 s");
    }
    tracing::info!("server stopped");
    result
}

/// The per-user send rate: counted across the cluster when the Redis bus
/// is on (a bad URL was refused by the bus already: then per process).
fn send_limit(server: &ServerConfig, bus: &crate::sse::BusConfig) -> SendLimit {
    let limit = SendLimit::new(server.sends_per_user, server.send_window);
    if bus.urls().is_empty() {
        return limit;
    }
    match crate::auth::rate_limit::SharedCount::new(
        bus.primary_url(),
        &bus.prefix,
        server.sends_per_user,
        server.send_window,
        bus.timeout,
    ) {
        Ok(cluster) => limit.across(cluster),
        Err(e) => {
            tracing::warn!(error = %e, "send limit counted per process only");
            limit
        }
    }
}

/// Exits the process `after` from now, from a plain thread: whatever the
/// async runtime is doing (a task that never yields, a wedged worker), a
/// requested shutdown ends the process in bounded time.
pub fn exit_after(after: std::time::Duration) {
    let spawned = std::thread::Builder::new()
        .name("exit-watchdog".into())
        .spawn(move || {
            std::thread::sleep(after);
            eprintln!(
                "error: the server did not stop within {after:?} of the shutdown signal; exiting"
            );
            std::process::exit(1);
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the exit watchdog: {e}");
    }
}

/// Resolves on SIGINT (Ctrl-C: stop now) or SIGTERM (drain first).
pub async fn shutdown_signal() -> Stop {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => Stop::Now,
        () = terminate => Stop::Drain,
    }
}

/// Raises this process's soft open-files limit to its hard limit (each SSE
/// client holds one socket). Returns the limit now in force.
pub fn raise_fd_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    Some(limit.rlim_cur)
}
