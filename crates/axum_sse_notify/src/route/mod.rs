//! The axum side: `GET /api/sse` (the stream, `stream`) and
//! `GET /api/sse/clients` (the listing, `listing`). Mount with
//! [`routes`] on any router whose state yields a [`Notifier`].

mod caller;
mod cors;
mod listing;
pub mod openapi;
mod presence;
#[cfg(feature = "service")]
mod publish;
mod rejection;
mod stream;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, FromRef, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::get;

use super::notifier::Notifier;
use super::target::{Identity, UserId};
use crate::socket::{StreamSocket, WatchedSocket};
pub use caller::TOKEN_PARAM;
#[cfg(feature = "service")]
pub use publish::SERVICE_LOG;
pub use rejection::Rejection;

pub use crate::target::{PRESENCE_KEY, RESERVED_TAG_KEYS};

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

/// The stream at `GET /api/sse` and the listing at `GET /api/sse/clients`,
/// on a router whose state yields a [`Notifier`]; with the `service`
/// feature, `POST /api/publish` and `POST /api/tokens/stream` too (they
/// answer 404 until `Notifier::with_service`). [`Mount`] puts them
/// elsewhere.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Notifier: FromRef<S>,
{
    Mount::default().routes()
}

/// The event stream's path unless [`Mount::stream`] says otherwise.
pub const STREAM_PATH: &str = "/api/sse";

/// Where the layer's routes are mounted.
///
/// ```
/// # use axum_sse_notify::{Mount, Notifier};
/// let routes: axum::Router<Notifier> = Mount::default()
///     .stream("/events")
///     .listing(None)
///     .routes();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    stream: String,
    listing: Option<String>,
    publish: Option<String>,
    mint: Option<String>,
    presence: Option<String>,
}

impl Default for Mount {
    fn default() -> Self {
        Mount {
            stream: STREAM_PATH.into(),
            listing: Some("/api/sse/clients".into()),
            publish: Some("/api/publish".into()),
            mint: Some("/api/tokens/stream".into()),
            presence: Some("/api/presence".into()),
        }
    }
}

impl Mount {
    /// The event stream's path.
    pub fn stream(mut self, path: impl Into<String>) -> Self {
        self.stream = path.into();
        self
    }

    /// The listing's path; `None` leaves the listing out.
    pub fn listing(mut self, path: Option<&str>) -> Self {
        self.listing = path.map(str::to_string);
        self
    }

    /// The publish API's path (service mode); `None` leaves it out.
    pub fn publish(mut self, path: Option<&str>) -> Self {
        self.publish = path.map(str::to_string);
        self
    }

    /// Where services mint stream tokens (service mode); `None` leaves it
    /// out.
    pub fn mint(mut self, path: Option<&str>) -> Self {
        self.mint = path.map(str::to_string);
        self
    }

    /// Where presence is asked (`None` leaves it out).
    pub fn presence(mut self, path: Option<&str>) -> Self {
        self.presence = path.map(str::to_string);
        self
    }

    /// Every route this mount serves, as (method, path): what an API
    /// description must list.
    pub fn paths(&self) -> Vec<(&'static str, &str)> {
        let mut paths = vec![
            ("GET", self.stream.as_str()),
            ("OPTIONS", self.stream.as_str()),
        ];
        if let Some(path) = &self.listing {
            paths.push(("GET", path));
        }
        if let Some(path) = &self.presence {
            paths.push(("GET", path));
        }
        if cfg!(feature = "service") {
            if let Some(path) = &self.publish {
                paths.push(("POST", path));
            }
            if let Some(path) = &self.mint {
                paths.push(("POST", path));
            }
        }
        paths
    }

    pub fn routes<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
        Notifier: FromRef<S>,
    {
        let mut router =
            Router::new().route(&self.stream, get(stream::stream).options(cors::preflight));
        if let Some(path) = &self.listing {
            router = router.route(path, get(listing::clients));
        }
        if let Some(path) = &self.presence {
            router = router.route(path, get(presence::presence));
        }
        #[cfg(feature = "service")]
        {
            use axum::routing::post;
            if let Some(path) = &self.publish {
                router = router.route(path, post(publish::publish));
            }
            if let Some(path) = &self.mint {
                router = router.route(path, post(publish::mint));
            }
        }
        router
    }
}

/// The client's address and, when the server watches its sockets, the
/// socket. The address is the host's [`RemoteAddr`] if it set one, else
/// the peer of the connection (`ConnectInfo`), else unknown.
pub(super) fn connection_of(request: &Request) -> (Option<IpAddr>, Option<Arc<dyn WatchedSocket>>) {
    let extensions = request.extensions();
    #[cfg_attr(not(feature = "lean-serve"), allow(unused_mut))]
    let mut peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0);
    #[cfg_attr(not(feature = "lean-serve"), allow(unused_mut))]
    let mut socket = extensions.get::<StreamSocket>().map(|s| s.0.clone());
    #[cfg(feature = "lean-serve")]
    if let Some(ConnectInfo(info)) = extensions.get::<ConnectInfo<lean_serve::ConnInfo>>() {
        peer = peer.or(Some(info.peer));
        let watched: Arc<dyn WatchedSocket> = info.socket.clone();
        socket = socket.or(Some(watched));
    }
    let addr = extensions
        .get::<RemoteAddr>()
        .map(|a| a.0)
        .or_else(|| peer.map(|p| p.ip()));
    (addr, socket)
}

/// The identity the app's auth layer attached; never anything the client
/// sent.
pub(super) fn identity_of(request: &Request) -> Result<Identity, Rejection> {
    request
        .extensions()
        .get::<Identity>()
        .cloned()
        .ok_or_else(|| {
            Rejection::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "sign in to use the event stream",
            )
        })
}

/// A handler argument: the identity the host's auth middleware attached to
/// the request, or `401 {"error":"unauthenticated"}` when there is none.
impl<S: Send + Sync> FromRequestParts<S> for Identity {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Rejection> {
        parts.extensions.get::<Identity>().cloned().ok_or_else(|| {
            Rejection::new(StatusCode::UNAUTHORIZED, "unauthenticated", "sign in first")
        })
    }
}

/// The stream's query parameters, read once: `tag`, `lastEventId`,
/// `client`.
pub(super) fn query_params(request: &Request) -> Result<Vec<(String, String)>, Rejection> {
    let Query(params) = Query::try_from_uri(request.uri())
        .map_err(|e| Rejection::bad_request("bad_query", format!("cannot read the query: {e}")))?;
    Ok(params)
}
