//! `GET /api/sse`: admission (limits first; with the Redis bus, a place
//! held before any wait or Redis read), the catch-up with the shared
//! stream, registration, the older part of a resume, the inbox backlog,
//! and the response.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::{PRESENCE_KEY, RESERVED_TAG_KEYS, caller, connection_of, cors, query_params};
use axum::http::StatusCode;

use super::rejection::Rejection;
use crate::connection::event_stream;
use crate::event_id::EventId;
use crate::metrics::Refusal;
use crate::notifier::Notifier;
use crate::registry::{Admission, Peer, RegisterError, Registration, Resume};
use crate::socket::WatchedSocket;
use crate::target::{ClientId, Identity, Recipient, Tag};

/// `GET /api/sse`: admits the caller and streams its events.
pub(super) async fn stream(State(notifier): State<Notifier>, request: Request) -> Response {
    let origin = cors::allowed_origin(&notifier, &request);
    let mut response = match open(notifier, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    cors::allow(&mut response, origin);
    response
}

async fn open(notifier: Notifier, request: Request) -> Result<Response, Rejection> {
    let params = query_params(&request)?;
    let caller = caller::identify(&notifier, &request, &params)?;
    let config = notifier.registry().config();
    let client_tags = client_tags(&params, &caller.identity, config.max_client_tags)?;
    // Before any place is held: the policy may look something up.
    caller::authorize(&notifier, &caller, &client_tags).await?;
    let mut client_tags = client_tags;
    if wants_presence(&params)? {
        // The server's tag: join/leave events on this stream's channels.
        if let Ok(tag) = Tag::new(PRESENCE_KEY, "on") {
            client_tags.push(tag);
        }
    }
    let identity = &caller.identity;
    // With the Redis bus, a place is held first (the limits apply before
    // anything costs a wait or a Redis read), then this process catches
    // up with the shared stream if the client comes from one that was
    // ahead, and a resume older than this process's history registers at
    // the history's floor, the part before it read from the stream once
    // the stream's identity (its client id above all) is granted.
    // Boxed: the Redis client's futures are large, and the handler's own
    // future (allocated for every stream request) stays small without.
    let (mut admission, mut older) = (None, None);
    let mut following = crate::bus::Following::none();
    if notifier.bus().through_redis() {
        let (held, id) = hold_place(&notifier, &request, identity, &params)?;
        admission = Some(held);
        following = Box::pin(notifier.bus().follow(&identity.user, id.as_deref())).await;
        // Right after the wait: the floor has no time to move on.
        older = id.and_then(|id| notifier.bus().resume_floor(&id, &identity.user));
    }
    let resume_at = older.map(|(_, floor)| floor);
    let (mut registration, socket, tags) = admit(
        &notifier,
        &request,
        identity,
        &params,
        client_tags,
        admission,
        resume_at,
    )?;
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
    // Registered first, then the inbox is read: see `inbox::backlog`
    // for why nothing falls between the two.
    #[cfg(feature = "inbox")]
    from_inbox(&notifier, &mut registration, identity).await;
    #[cfg(not(feature = "inbox"))]
    registration.stored_unavailable();
    let expires_in = caller.expires_at.map(|at| {
        std::time::Duration::from_millis(at.saturating_sub(crate::registry::unix_millis_now()))
    });
    let body = Body::from_stream(event_stream(
        registration,
        socket,
        config.ping_interval,
        config.retry,
        expires_in,
        following,
    ));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// What the stream gets from the inbox before live events: the stored
/// part of a resume, or (starting without a position) the backlog.
#[cfg(feature = "inbox")]
async fn from_inbox(notifier: &Notifier, registration: &mut Registration, identity: &Identity) {
    let max = notifier.registry().config().inbox_replay_max;
    let inbox = match notifier.inbox() {
        Ok(inbox) if max > 0 => inbox,
        _ => return registration.stored_unavailable(),
    };
    let start = registration.start_id();
    if let Some(gap) = registration.stored_gap().cloned() {
        match inbox.resume(&identity.user, start, &gap, max).await {
            Ok(stored) => registration.set_stored(stored.frames, stored.ids),
            Err(e) => {
                registration.in_span(|| {
                    tracing::warn!(client = %registration.id(), error = %e, "inbox unavailable; the stored part of the resume is not sent")
                });
                registration.stored_unavailable();
            }
        }
    } else if registration.is_fresh() {
        match inbox.backlog(&identity.user, start, max).await {
            Ok(backlog) => registration.set_backlog(backlog.frames, backlog.ids),
            Err(e) => registration.in_span(|| {
                tracing::warn!(client = %registration.id(), error = %e, "inbox backlog unavailable; streaming live events only")
            }),
        }
    }
}

/// The stream, its socket and every tag it carries.
type Admitted = (Registration, Option<Arc<dyn WatchedSocket>>, Vec<Tag>);

/// With the Redis bus, before anything waits or reads Redis: holds a
/// place for the stream (refusing at once what the limits refuse), and
/// says where the client wants to resume. Not async: a request is not
/// held across a wait.
fn hold_place(
    notifier: &Notifier,
    request: &Request,
    identity: &Identity,
    params: &[(String, String)],
) -> Result<(Admission, Option<String>), Rejection> {
    let registry = notifier.registry();
    let claim = previous_client(params)?;
    let (addr, _) = connection_of(request);
    let id = last_event_id(request, params);
    let admission = registry.admit(identity, addr, claim).map_err(|e| {
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
    identity: &Identity,
    params: &[(String, String)],
    client_tags: Vec<Tag>,
    admission: Option<Admission>,
    resume_at: Option<EventId>,
) -> Result<Admitted, Rejection> {
    let registry = notifier.registry();
    let config = registry.config();
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
        None => last_event_id(request, params),
    };
    let resume = match &last_event_id {
        Some(id) => Resume::After {
            last_event_id: id,
            client: previous_client(params)?,
        },
        None => Resume::Fresh,
    };
    let peer = Peer {
        addr,
        socket: socket.clone(),
    };
    let registered = match admission {
        Some(admission) => {
            registry.register_admitted(admission, identity, client_tags, peer, resume)
        }
        None => registry.register_from(identity, client_tags, peer, resume),
    };
    let mut registration = registered.map_err(|e| {
        registry.count_refusal(refusal_of(&e));
        refusal(e, config.retry)
    })?;
    let peer = addr.map(|a| a.to_string()).unwrap_or_default();
    // A root span: the stream outlives the request that opened it.
    // At `debug`: a recorded span costs each stream a few hundred bytes;
    // the connect and disconnect lines carry the same fields anyway.
    let span = tracing::debug_span!(target: crate::STREAM_LOG, parent: None, "stream",
        client = %registration.id(), user = %identity.user, tags = %TagList(identity, params), %peer);
    registration.set_span(span);
    registration.in_span(|| {
        tracing::info!(target: crate::STREAM_LOG, client = %registration.id(),
            user = %identity.user, %peer, "sse client connected");
    });
    Ok((registration, socket, tags))
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

/// `?presence=true`: the stream wants `sse-presence` events for its
/// channels.
fn wants_presence(params: &[(String, String)]) -> Result<bool, Rejection> {
    match params.iter().find(|(name, _)| name == "presence") {
        None => Ok(false),
        Some((_, value)) => match value.as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            other => Err(Rejection::bad_request(
                "bad_query",
                format!("presence is true or false, not {other:?}"),
            )),
        },
    }
}

/// `?client=<id>`: the client id the reconnecting connection had before.
/// Only trusted within the same session (see [`Resume::After`]).
fn previous_client(params: &[(String, String)]) -> Result<Option<ClientId>, Rejection> {
    match params.iter().find(|(name, _)| name == "client") {
        None => Ok(None),
        Some((_, value)) => ClientId::parse(value).map(Some).ok_or_else(|| {
            Rejection::bad_request("bad_client_id", format!("{value:?} is not a client id"))
        }),
    }
}

/// Tags from `?tag=key:value` (repeatable). Other query parameters are
/// ignored: in particular nothing in the query sets a user, session or role.
fn client_tags(
    params: &[(String, String)],
    identity: &Identity,
    max: usize,
) -> Result<Vec<Tag>, Rejection> {
    let mut tags = Vec::new();
    for (name, value) in params {
        if name != "tag" {
            continue;
        }
        let tag =
            Tag::parse(value).map_err(|e| Rejection::bad_request("bad_tag", e.to_string()))?;
        let reserved = RESERVED_TAG_KEYS.contains(&tag.key())
            || identity.tags.iter().any(|t| t.key() == tag.key());
        if reserved {
            return Err(Rejection::bad_request(
                "reserved_tag",
                format!("tag key `{}` is reserved for the server", tag.key()),
            ));
        }
        if !tags.contains(&tag) {
            tags.push(tag);
        }
        if tags.len() > max {
            return Err(Rejection::bad_request(
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

fn refusal(error: RegisterError, retry: std::time::Duration) -> Rejection {
    let message = error.to_string();
    let back_off = retry.max(std::time::Duration::from_secs(5));
    match error {
        RegisterError::TooManyClients { .. } => {
            Rejection::new(StatusCode::SERVICE_UNAVAILABLE, "too_many_clients", message)
                .retry_after(back_off)
        }
        RegisterError::TooManyForUser { .. } => Rejection::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections",
            message,
        )
        .retry_after(back_off),
        RegisterError::TooManyForAddress { .. } => Rejection::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections_from_address",
            message,
        )
        .retry_after(back_off),
        RegisterError::ShuttingDown => {
            Rejection::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", message)
                .retry_after(back_off)
        }
        RegisterError::SessionEnded => {
            Rejection::new(StatusCode::UNAUTHORIZED, "session_ended", message)
        }
    }
}
