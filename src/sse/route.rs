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
use super::registry::{Admission, ClientFilter, Peer, RegisterError, Registration, Resume};
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
    // With the Redis bus, a place is held first (the limits apply before
    // anything costs a wait or a Redis read), then this process catches
    // up with the shared stream if the client comes from one that was
    // ahead, and a resume older than this process's history registers at
    // the history's floor, the part before it read from the stream once
    // the stream's identity (its client id above all) is granted.
    // Boxed: the Redis client's futures are large, and the handler's own
    // future (allocated for every stream request) stays small without.
    let (mut admission, mut older) = (None, None);
    if notifier.bus().is_shared() {
        let (held, id) = match hold_place(&notifier, &request) {
            Ok(held) => held,
            Err(error) => return error.into_response(),
        };
        admission = Some(held);
        Box::pin(notifier.bus().catch_up(id.as_deref())).await;
        // Right after the wait: the floor has no time to move on.
        older = id.and_then(|id| notifier.bus().resume_floor(&id));
    }
    let admitted = admit(
        &notifier,
        &request,
        admission,
        older.map(|(_, floor)| floor),
    );
    let (mut registration, identity, socket, tags) = match admitted {
        Ok(admitted) => admitted,
        Err(error) => return error.into_response(),
    };
    let config = notifier.registry().config();
    if let Some((after, floor)) = older
        && !registration.opens_with_reset()
    {
        // Exactly the identity this stream was granted: a `client=` claim
        // that was refused selects nothing here either.
        let recipient = Recipient {
            client: registration.id(),
            user: &identity.user,
            session: &identity.session,
            tags: &tags,
        };
        let frames = Box::pin(
            notifier
                .bus()
                .older(after, floor, &recipient, identity.since),
        )
        .await;
        registration.set_older(frames);
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

/// The stream, its identity, its socket and every tag it carries.
type Admitted = (Registration, Identity, Option<Arc<SocketState>>, Vec<Tag>);

/// With the Redis bus, before anything waits or reads Redis: holds a
/// place for the stream (refusing at once what the limits refuse), and
/// says where the client wants to resume. Not async: a request is not
/// held across a wait.
fn hold_place(
    notifier: &Notifier,
    request: &Request,
) -> Result<(Admission, Option<String>), AppError> {
    let registry = notifier.registry();
    let identity = identity_of(request)?;
    let params = query_params(request)?;
    let claim = previous_client(&params)?;
    let (addr, _) = connection_of(request);
    let id = last_event_id(request, &params);
    let admission = registry.admit(&identity, addr, claim).map_err(|e| {
        registry.count_refusal(refusal_of(&e));
        refusal(e, registry.config().retry)
    })?;
    Ok((admission, id))
}

/// Registers the caller (into the place `admission` holds, if any);
/// `resume_at` (the history's floor, the part before it read from the
/// bus) replaces the id the client sent.
fn admit(
    notifier: &Notifier,
    request: &Request,
    admission: Option<Admission>,
    resume_at: Option<EventId>,
) -> Result<Admitted, AppError> {
    let registry = notifier.registry();
    let config = registry.config();
    let identity = identity_of(request)?;
    let params = query_params(request)?;
    let client_tags = client_tags(&params, &identity, config.max_client_tags)?;
    let mut tags = identity.tags.clone();
    tags.extend(
        client_tags
            .iter()
            .filter(|t| !identity.tags.contains(t))
            .cloned(),
    );

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
    let peer = Peer {
        addr,
        socket: socket.clone(),
    };
    let registered = match admission {
        Some(admission) => {
            registry.register_admitted(admission, &identity, client_tags, peer, resume)
        }
        None => registry.register_from(&identity, client_tags, peer, resume),
    };
    let mut registration = registered.map_err(|e| {
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
    Ok((registration, identity, socket, tags))
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
        RegisterError::SessionEnded => Refusal::SessionEnded,
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
        RegisterError::SessionEnded => {
            AppError::new(ErrorKind::Unauthenticated, "session_ended", message)
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
