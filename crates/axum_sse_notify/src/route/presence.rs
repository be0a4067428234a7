//! `GET /api/presence?channel=room:blue` (a channel's members) or
//! `?user=<id>` (whether a user is online), in every process.
//!
//! Who may ask: a service token with the `presence` scope, anything; a
//! stream token or the host's session, a channel it may join (its claims,
//! the host's policy) and its own user.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{Rejection, caller, query_params};
use crate::notifier::Notifier;
use crate::target::{RESERVED_TAG_KEYS, Tag, UserId};

enum Asked {
    Channel(Tag),
    User(UserId),
}

fn asked(params: &[(String, String)]) -> Result<Asked, Rejection> {
    let find = |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    match (find("channel"), find("user")) {
        (Some(channel), None) => Tag::parse(channel)
            .map(Asked::Channel)
            .map_err(|e| Rejection::bad_request("bad_tag", e.to_string())),
        (None, Some(user)) if !user.is_empty() => Ok(Asked::User(UserId::new(user.as_str()))),
        _ => Err(Rejection::bad_request(
            "bad_query",
            "ask for one `channel=key:value` or one `user=<id>`",
        )),
    }
}

/// `GET /api/presence`.
pub(super) async fn presence(State(notifier): State<Notifier>, request: Request) -> Response {
    match answer(&notifier, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn answer(notifier: &Notifier, request: Request) -> Result<Response, Rejection> {
    let params = query_params(&request)?;
    let asked = asked(&params)?;
    // Read before any wait: a request is not held across one.
    let caller = caller::identify(notifier, &request, &params);
    let headers = request.headers().clone();
    drop(request);
    if !by_service(notifier, &headers).await? {
        let caller = caller?;
        let allowed = match &asked {
            Asked::Channel(channel) => {
                !RESERVED_TAG_KEYS.contains(&channel.key())
                    && caller::authorize(notifier, &caller, std::slice::from_ref(channel))
                        .await
                        .is_ok()
            }
            Asked::User(user) => *user == caller.identity.user,
        };
        if !allowed {
            return Err(Rejection::new(
                StatusCode::FORBIDDEN,
                "presence_forbidden",
                "you may see the presence of the channels you may join and your own",
            ));
        }
    }
    let presence = notifier.presence();
    Ok(match asked {
        Asked::Channel(channel) => axum::Json(presence.channel(&channel)).into_response(),
        Asked::User(user) => axum::Json(presence.user(&user)).into_response(),
    })
}

/// Whether a service token with the `presence` scope asks (an invalid
/// one is refused; a stream token or no token is not a service's).
#[cfg(feature = "service")]
async fn by_service(notifier: &Notifier, headers: &HeaderMap) -> Result<bool, Rejection> {
    use crate::service::token::{SECRET_PREFIX, TokenScope};
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(_, token)| token.trim().starts_with(SECRET_PREFIX));
    if !bearer {
        return Ok(false);
    }
    let service = super::publish::service_of(notifier)?;
    super::publish::authenticate(service, headers, TokenScope::Presence).await?;
    Ok(true)
}

#[cfg(not(feature = "service"))]
async fn by_service(_: &Notifier, _: &HeaderMap) -> Result<bool, Rejection> {
    Ok(false)
}
