//! The axum side: `GET /api/sse` (the stream, [`stream`]) and
//! `GET /api/sse/clients` (the listing, [`listing`]). Mount with
//! [`routes`] on any router whose state yields a [`Notifier`].

mod listing;
mod stream;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, FromRef, Query, Request};
use axum::routing::get;

use super::notifier::Notifier;
use super::target::{Identity, UserId};
use crate::error::{AppError, ErrorKind};
use crate::http::{ConnInfo, SocketState};

/// Tag keys a client can never set with `?tag=`: they carry identity and
/// roles, which only the server assigns.
pub const RESERVED_TAG_KEYS: &[&str] = &["role", "user", "session", "client"];

/// The address a request came from, as the app determined it (behind a
/// trusted proxy, from its forwarding header), inserted as a request
/// extension. Without it, the socket's peer address is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteAddr(pub IpAddr);

/// What the listing may show to the caller. The app's auth layer inserts
/// it (as `Arc<ListingScope>`); without it callers see their own clients.
#[derive(Debug, Clone)]
pub enum ListingScope {
    Everything,
    /// Only this user's clients, plus aggregate counts.
    OwnClients(UserId),
}

pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Notifier: FromRef<S>,
{
    Router::new()
        .route("/api/sse", get(stream::stream))
        .route("/api/sse/clients", get(listing::clients))
}

/// The client's address and, when served by [`crate::http::serve`], its
/// socket. The address is the app's [`RemoteAddr`] if it set one, else the
/// peer of the connection (`ConnectInfo` of either server), else unknown.
pub(super) fn connection_of(request: &Request) -> (Option<IpAddr>, Option<Arc<SocketState>>) {
    let extensions = request.extensions();
    let served = extensions.get::<ConnectInfo<ConnInfo>>();
    let peer = served.map(|info| info.0.peer).or_else(|| {
        extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0)
    });
    let addr = extensions
        .get::<RemoteAddr>()
        .map(|a| a.0)
        .or_else(|| peer.map(|p| p.ip()));
    (addr, served.map(|info| info.0.socket.clone()))
}

/// The identity the app's auth layer attached; never anything the client
/// sent.
pub(super) fn identity_of(request: &Request) -> Result<Identity, AppError> {
    request
        .extensions()
        .get::<Identity>()
        .cloned()
        .ok_or_else(|| {
            AppError::new(
                ErrorKind::Unauthenticated,
                "unauthenticated",
                "sign in to use the event stream",
            )
        })
}

/// The stream's query parameters, read once: `tag`, `lastEventId`,
/// `client`.
pub(super) fn query_params(request: &Request) -> Result<Vec<(String, String)>, AppError> {
    let Query(params) = Query::try_from_uri(request.uri())
        .map_err(|e| AppError::bad_request("bad_query", format!("cannot read the query: {e}")))?;
    Ok(params)
}
