//! The axum side: `GET /api/sse` (the stream) and `GET /api/sse/clients`
//! (the listing). Mount with [`routes`] on any router whose state yields a
//! [`Notifier`].

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRef, Query, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::connection::event_stream;
use super::event_id::EventId;
use super::metrics::Refusal;
use super::notifier::Notifier;
use super::registry::{ClientFilter, Peer, RegisterError, Registration, Resume};
use super::target::{ClientId, Identity, Recipient, SessionId, Tag, UserId};
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
        .route("/api/sse", get(stream))
        .route("/api/sse/clients", get(clients))
}

/// `GET /api/sse`: admits the caller and streams its events.
async fn stream(State(notifier): State<Notifier>, request: Request) -> Response {
    // With the Redis bus only (a process alone does none of this), for
    // signed-in callers: a client may come from a process ahead of this
    // one, or this one may have just started: wait (bounded) until it has
    // read the shared stream far enough. Then, for a resume older than
    // this process's history but maybe not than the stream: read the
    // older part now, and resume at the history's floor (right after, so
    // that it has no time to move on).
    // Boxed: the Redis client's futures are large, and the handler's own
    // future (allocated for every stream request) stays small without.
    let mut older = None;
    if notifier.bus().is_shared() && request.extensions().get::<Identity>().is_some() {
        let id = query_params(&request)
            .ok()
            .and_then(|params| last_event_id(&request, &params));
        Box::pin(notifier.bus().catch_up(id.as_deref())).await;
        if let Some(wanted) = id.and_then(|id| older_wanted(&notifier, &request, &id)) {
            older = Some(Box::pin(older_part(&notifier, wanted)).await);
        }
    }
    let (mut registration, identity, socket) =
        match admit(&notifier, &request, older.as_ref().map(|o| o.floor)) {
            Ok(admitted) => admitted,
            Err(error) => return error.into_response(),
        };
    let config = notifier.registry().config();
    if let Some(older) = older
        && !registration.opens_with_reset()
    {
        registration.set_older(older.frames);
    }
    // Registered first, then the unread rows are read: see
    // `inbox::backlog` for why nothing falls between the two.
    if registration.is_fresh()
        && config.inbox_replay_max > 0
        && let Ok(inbox) = notifier.inbox()
    {
        let start = registration.start();
        match inbox
            .backlog(&identity.user, start, config.inbox_replay_max)
            .await
        {
            Ok(backlog) => registration.set_backlog(backlog.frames, backlog.ids),
            Err(e) => registration.in_span(|| {
                tracing::warn!(client = %registration.id(), error = %e, "inbox backlog unavailable; streaming live events only")
            }),
        }
    }
    let body = Body::from_stream(event_stream(
        registration,
        socket,
        config.ping_interval,
        config.retry,
    ));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

type Admitted = (Registration, Identity, Option<Arc<SocketState>>);

/// A resume from before the history's floor: where to resume in the
/// history, and what came before it (`None`: the bus's stream no longer
/// holds it all; the stream starts with `sse-reset`).
struct Older {
    floor: EventId,
    frames: Option<bytes::Bytes>,
}

/// With the Redis bus, for a signed-in client resuming from before what
/// this process's history holds: the events it missed up to the history's
/// floor, read from the stream with the client's targeting (its tags, its
/// previous client id if it asks for it back).
async fn older_part(notifier: &Notifier, wanted: OlderWanted) -> Older {
    let (after, floor, identity, tags, client) = wanted;
    let recipient = Recipient {
        client,
        user: &identity.user,
        session: &identity.session,
        tags: &tags,
    };
    let frames = notifier.bus().older(after, floor, &recipient).await;
    Older { floor, frames }
}

/// The client's position, the history's floor, and its targeting.
type OlderWanted = (EventId, EventId, Identity, Vec<Tag>, ClientId);

/// Read from the request before any wait (a request is not held across
/// one): `Some` only for a signed-in client resuming from before the
/// history's floor, with the Redis bus.
fn older_wanted(notifier: &Notifier, request: &Request, id: &str) -> Option<OlderWanted> {
    // The cheap test first: most resumes are within the history.
    let (after, floor) = notifier.bus().resume_floor(id)?;
    let identity = identity_of(request).ok()?;
    let params = query_params(request).ok()?;
    let max_tags = notifier.registry().config().max_client_tags;
    let client_tags = client_tags(&params, &identity, max_tags).ok()?;
    let mut tags = identity.tags.clone();
    tags.extend(
        client_tags
            .into_iter()
            .filter(|t| !identity.tags.contains(t)),
    );
    let client = previous_client(&params)
        .ok()
        .flatten()
        .unwrap_or_else(ClientId::random);
    Some((after, floor, identity, tags, client))
}

/// Registers the caller; `resume_at` (the history's floor, the part
/// before it read from the bus) replaces the id the client sent.
fn admit(
    notifier: &Notifier,
    request: &Request,
    resume_at: Option<EventId>,
) -> Result<Admitted, AppError> {
    let registry = notifier.registry();
    let config = registry.config();
    let identity = identity_of(request)?;
    let params = query_params(request)?;
    let tags = client_tags(&params, &identity, config.max_client_tags)?;

    let (addr, socket) = connection_of(request);
    let last_event_id = match resume_at {
        Some(floor) => Some(floor.to_string()),
        None => last_event_id(request, &params),
    };
    let resume = match &last_event_id {
        Some(id) => Resume::After {
            last_event_id: id,
            client: previous_client(&params)?,
        },
        None => Resume::Fresh,
    };
    let mut registration = registry
        .register_from(
            &identity,
            tags,
            Peer {
                addr,
                socket: socket.clone(),
            },
            resume,
        )
        .map_err(|e| {
            registry.count_refusal(refusal_of(&e));
            refusal(e, config.retry)
        })?;
    let peer = addr.map(|a| a.to_string()).unwrap_or_default();
    // A root span: the stream outlives the request that opened it.
    // At `debug`: a recorded span costs each stream a few hundred bytes;
    // the connect and disconnect lines carry the same fields anyway.
    let span = tracing::debug_span!(target: super::STREAM_LOG, parent: None, "stream",
        client = %registration.id(), user = %identity.user, tags = %TagList(&identity, &params), %peer);
    registration.set_span(span);
    registration.in_span(|| {
        tracing::info!(target: super::STREAM_LOG, client = %registration.id(),
            user = %identity.user, %peer, "sse client connected");
    });
    Ok((registration, identity, socket))
}

/// Where the client wants to resume: the `Last-Event-ID` header (what a
/// browser's `EventSource` sends when it reconnects by itself), else a
/// `lastEventId` query parameter (for clients that cannot set headers).
/// Bytes that are not text are kept as they are, to be answered with
/// `sse-reset`.
fn last_event_id(request: &Request, params: &[(String, String)]) -> Option<String> {
    if let Some(value) = request.headers().get("last-event-id") {
        let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
        return (!text.is_empty()).then_some(text);
    }
    params
        .iter()
        .find(|(name, value)| name == "lastEventId" && !value.is_empty())
        .map(|(_, value)| value.clone())
}

/// `?client=<id>`: the client id the reconnecting connection had before.
/// Only trusted within the same session (see [`Resume::After`]).
fn previous_client(params: &[(String, String)]) -> Result<Option<ClientId>, AppError> {
    match params.iter().find(|(name, _)| name == "client") {
        None => Ok(None),
        Some((_, value)) => ClientId::parse(value).map(Some).ok_or_else(|| {
            AppError::bad_request("bad_client_id", format!("{value:?} is not a client id"))
        }),
    }
}

/// The client's address and, when served by [`crate::http::serve`], its
/// socket. The address is the app's [`RemoteAddr`] if it set one, else the
/// peer of the connection (`ConnectInfo` of either server), else unknown.
fn connection_of(request: &Request) -> (Option<IpAddr>, Option<Arc<SocketState>>) {
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
fn identity_of(request: &Request) -> Result<Identity, AppError> {
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
fn query_params(request: &Request) -> Result<Vec<(String, String)>, AppError> {
    let Query(params) = Query::try_from_uri(request.uri())
        .map_err(|e| AppError::bad_request("bad_query", format!("cannot read the query: {e}")))?;
    Ok(params)
}

/// Tags from `?tag=key:value` (repeatable). Other query parameters are
/// ignored: in particular nothing in the query sets a user, session or role.
fn client_tags(
    params: &[(String, String)],
    identity: &Identity,
    max: usize,
) -> Result<Vec<Tag>, AppError> {
    let mut tags = Vec::new();
    for (name, value) in params {
        if name != "tag" {
            continue;
        }
        let tag = Tag::parse(value).map_err(|e| AppError::bad_request("bad_tag", e.to_string()))?;
        let reserved = RESERVED_TAG_KEYS.contains(&tag.key())
            || identity.tags.iter().any(|t| t.key() == tag.key());
        if reserved {
            return Err(AppError::bad_request(
                "reserved_tag",
                format!("tag key `{}` is reserved for the server", tag.key()),
            ));
        }
        if !tags.contains(&tag) {
            tags.push(tag);
        }
        if tags.len() > max {
            return Err(AppError::bad_request(
                "too_many_tags",
                format!("at most {max} tags per connection"),
            ));
        }
    }
    Ok(tags)
}

/// The client's own tags, as a log field (only built when recorded).
struct TagList<'a>(&'a Identity, &'a [(String, String)]);

impl std::fmt::Display for TagList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let own = self.0.tags.iter().map(ToString::to_string);
        let asked = self
            .1
            .iter()
            .filter(|(name, _)| name == "tag")
            .map(|(_, value)| value.clone());
        let all: Vec<String> = own.chain(asked).collect();
        f.write_str(&all.join(","))
    }
}

fn refusal_of(error: &RegisterError) -> Refusal {
    match error {
        RegisterError::TooManyClients { .. } => Refusal::TooManyClients,
        RegisterError::TooManyForUser { .. } => Refusal::TooManyForUser,
        RegisterError::TooManyForAddress { .. } => Refusal::TooManyForAddress,
        RegisterError::ShuttingDown => Refusal::ShuttingDown,
    }
}

fn refusal(error: RegisterError, retry: std::time::Duration) -> AppError {
    let message = error.to_string();
    let back_off = retry.max(std::time::Duration::from_secs(5));
    match error {
        RegisterError::TooManyClients { .. } => {
            AppError::new(ErrorKind::Unavailable, "too_many_clients", message).retry_after(back_off)
        }
        RegisterError::TooManyForUser { .. } => {
            AppError::new(ErrorKind::TooManyRequests, "too_many_connections", message)
                .retry_after(back_off)
        }
        RegisterError::TooManyForAddress { .. } => AppError::new(
            ErrorKind::TooManyRequests,
            "too_many_connections_from_address",
            message,
        )
        .retry_after(back_off),
        RegisterError::ShuttingDown => {
            AppError::new(ErrorKind::Unavailable, "shutting_down", message).retry_after(back_off)
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClientsQuery {
    user_id: Option<String>,
    session_id: Option<String>,
    /// Comma-separated.
    client_ids: Option<String>,
}

/// `GET /api/sse/clients`: the connections (filtered) and the stats.
async fn clients(State(notifier): State<Notifier>, request: Request) -> Response {
    let identity = match identity_of(&request) {
        Ok(identity) => identity,
        Err(error) => return error.into_response(),
    };
    // Without a scope from the app, a caller sees only their own clients.
    let scope = request
        .extensions()
        .get::<Arc<ListingScope>>()
        .map(|s| (**s).clone())
        .unwrap_or_else(|| ListingScope::OwnClients(identity.user.clone()));
    match list_clients(&notifier, &request, &identity, scope) {
        Ok(body) => axum::Json(body).into_response(),
        Err(error) => error.into_response(),
    }
}

fn list_clients(
    notifier: &Notifier,
    request: &Request,
    identity: &Identity,
    scope: ListingScope,
) -> Result<serde_json::Value, AppError> {
    let Query(query): Query<ClientsQuery> = Query::try_from_uri(request.uri())
        .map_err(|e| AppError::bad_request("bad_query", format!("cannot read the query: {e}")))?;
    let clients = match query.client_ids.as_deref() {
        None => None,
        Some(list) => {
            let mut ids = Vec::new();
            let mut seen = HashSet::new();
            for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let id = ClientId::parse(part).ok_or_else(|| {
                    AppError::bad_request("bad_client_id", format!("{part:?} is not a client id"))
                })?;
                if seen.insert(id) {
                    ids.push(id);
                }
            }
            Some(ids)
        }
    };
    let mut filter = ClientFilter {
        user: query.user_id.filter(|u| !u.is_empty()),
        session: query
            .session_id
            .filter(|s| !s.is_empty())
            .map(SessionId::new),
        clients,
    };
    let registry = notifier.registry();
    match scope {
        // The clients listed are this process's; the figures, every
        // process's (with the bus's state and each process's share).
        ListingScope::Everything => Ok(serde_json::json!({
            "clients": registry.clients(&filter),
            "stats": notifier.stats(),
            "bus": notifier.bus_status(),
        })),
        ListingScope::OwnClients(user) => {
            // Other users' clients are never listed; per-user counts are
            // left out of the stats, as they would name other users.
            let asked_for_other = filter
                .user
                .as_deref()
                .is_some_and(|asked| asked != user.as_str() && asked != identity.username);
            filter.user = Some(user.as_str().to_string());
            let clients = if asked_for_other {
                Vec::new()
            } else {
                registry.clients(&filter)
            };
            Ok(serde_json::json!({
                "clients": clients,
                "stats": notifier.stats().aggregate_only(),
                "bus": notifier.bus_status(),
            }))
        }
    }
}
