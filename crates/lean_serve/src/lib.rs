//! The connection server: accepts sockets, reads request heads, and
//! serves an axum router on them. It knows HTTP/1.1 and sockets, nothing
//! about events, users or pages; any router can be served with it, and
//! the SSE layer works as well under plain `axum::serve`.
//!
//! Why it exists: an idle event stream served by hyper keeps hyper's
//! per-connection read and write buffers and dispatcher for as long as it
//! is open, most of what an idle connection costs. So request heads are
//! read here, and the **direct path** stays deliberately narrow: only a
//! bodiless HTTP/1.1 `GET` (pages, static files, event streams) is routed
//! as usual and has its response written by the `direct` module, after which a
//! keep-alive connection comes back for its next request. Everything else
//! (a request with a body, any other method, an upgrade, HTTP/1.0,
//! pipelining, an oversized head) hands the connection to hyper with the
//! bytes already read, for good, and it behaves exactly as under
//! `axum::serve`. With [`ServeOptions::direct`] off, hyper serves every
//! connection from its first byte.
//!
//! [`socket`] wraps each accepted socket so that a write stuck on a
//! client that stopped reading fails after a timeout, and records how the
//! socket ended ([`SocketEnd`]) for the handler that owns the response.

mod direct;
#[doc(hidden)]
pub mod fuzzing;
mod head;
mod rewind;
pub mod socket;
mod tcp;
pub mod turn;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::extract::Request;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;
use tower::ServiceExt;

use direct::After;
use head::Head;
use rewind::Rewind;
pub use socket::{ConnInfo, SocketEnd, SocketState, WatchedIo, WatchedListener};
pub use tcp::SharedTcp;
pub use turn::Claimed;

/// How connections are served.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// A connection must send a complete request head within this long
    /// (idle keep-alive connections included).
    pub header_timeout: Duration,
    /// A request head longer than this is left to hyper.
    pub max_direct_head: usize,
    /// Answer bodiless GETs directly; `false`: hyper serves everything.
    pub direct: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            header_timeout: Duration::from_secs(30),
            max_direct_head: 8 * 1024,
            direct: true,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops
/// accepting, asks keep-alive connections to close after their current
/// request, and returns once every connection has ended. (Event streams
/// end when the notifier shuts down: `shutdown` should do that.)
pub async fn serve(
    mut listener: WatchedListener,
    app: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) {
    // Every connection holds a receiver: `closed()` below resolves when
    // the last one is gone.
    let (stopping, stop) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let connection = connection(io, peer, app.clone(), options.clone(), stop.clone());
        tokio::spawn(connection);
    }
    drop(listener);
    drop(stop);
    let _ = stopping.send(true);
    stopping.closed().await;
}

async fn connection(
    mut io: WatchedIo<SharedTcp>,
    peer: SocketAddr,
    app: Router,
    options: ServeOptions,
    mut stop: watch::Receiver<bool>,
) {
    let info = ConnInfo {
        peer,
        socket: io.state().clone(),
    };
    if !options.direct {
        let deadline = tokio::time::Instant::now() + options.header_timeout;
        let hyper = with_hyper(
            Rewind::new(Vec::new(), io),
            app,
            info,
            options,
            stop,
            deadline,
        );
        return Box::pin(hyper).await;
    }
    loop {
        // The head must be complete by then, whoever ends up reading it.
        let deadline = tokio::time::Instant::now() + options.header_timeout;
        // Between requests, a shutdown closes the connection at once.
        let next = tokio::select! {
            next = tokio::time::timeout_at(
                deadline,
                Box::pin(head::read_head(&mut io, options.max_direct_head)),
            ) => next,
            () = stopping(&mut stop) => return,
        };
        match next {
            Ok(Head::Direct {
                request,
                keep_alive,
            }) => {
                let mut request = *request;
                request.extensions_mut().insert(ConnectInfo(info.clone()));
                // Shutting down: this answer says `connection: close`.
                let keep_alive = keep_alive && !*stop.borrow();
                let after =
                    direct::serve(&mut io, &info.socket, request, app.clone(), keep_alive).await;
                if after == After::Close {
                    return;
                }
            }
            Ok(Head::Other(bytes)) => {
                // A head cut short at `max_direct_head` is finished by
                // hyper within what is left of this one's time, not anew.
                let hyper = with_hyper(Rewind::new(bytes, io), app, info, options, stop, deadline);
                return Box::pin(hyper).await;
            }
            Ok(Head::Gone) | Err(_) => return,
        }
    }
}

/// Resolves once the server is shutting down.
async fn stopping(stop: &mut watch::Receiver<bool>) {
    // The guard this returns must not live across another await.
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// Hyper's HTTP/1.1 (keep-alive, pipelining, upgrades), with graceful
/// shutdown: the connection closes after the request it is serving. The
/// first request head must be complete by `first_head_by`; later ones get
/// hyper's own `header_timeout` each.
async fn with_hyper(
    io: Rewind<WatchedIo<SharedTcp>>,
    app: Router,
    info: ConnInfo,
    options: ServeOptions,
    mut stop: watch::Receiver<bool>,
    first_head_by: tokio::time::Instant,
) {
    let first_seen = Arc::new(AtomicBool::new(false));
    let service = hyper::service::service_fn({
        let first_seen = first_seen.clone();
        move |mut request: Request<Incoming>| {
            first_seen.store(true, Ordering::Relaxed);
            request.extensions_mut().insert(ConnectInfo(info.clone()));
            app.clone().oneshot(request.map(Body::new))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout);
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    let first_head = tokio::time::sleep_until(first_head_by);
    tokio::select! {
        () = first_head => {
            if !first_seen.load(Ordering::Relaxed) {
                tracing::debug!("no complete request head within the header timeout");
                return;
            }
            // The first request is being served: no deadline from here.
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = stopping(&mut stop) => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                tracing::debug!("connection ended: {e}");
            }
        }
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!("connection ended: {e}");
            }
        }
        () = stopping(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            if let Err(e) = connection.await {
                tracing::debug!("connection ended during shutdown: {e}");
            }
        }
    }
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
