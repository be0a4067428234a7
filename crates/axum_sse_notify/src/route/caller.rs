//! Who opens a stream, and which channels it may join.
//!
//! A request the host already identified (an [`Identity`] its middleware
//! inserted, from its own session) is that identity, and the host's
//! [`crate::ChannelPolicy`] decides its channels. Otherwise, with service
//! mode on, a stream token (`Authorization: Bearer …`, or `access_token=`
//! in the query for `EventSource`, which cannot set headers) names the
//! user and the channels it may join. Nothing else the client sends says
//! who it is.

use axum::extract::Request;
use axum::http::{StatusCode, header};

use super::Rejection;
use super::identity_of;
use crate::channel::ChannelGrant;
use crate::notifier::Notifier;
use crate::target::{Identity, Tag};

/// The query parameter a stream token may come in (RFC 6750's name).
pub const TOKEN_PARAM: &str = "access_token";

/// A stream's caller.
pub(super) struct Caller {
    pub identity: Identity,
    /// What a stream token lets it join; `None`: the host's session (its
    /// policy decides).
    pub grant: Option<ChannelGrant>,
    /// When its stream token expires (unix ms).
    pub expires_at: Option<u64>,
}

/// The token in `Authorization: Bearer …`, else in `access_token=`.
fn presented_token<'a>(request: &'a Request, params: &'a [(String, String)]) -> Option<&'a str> {
    if let Some(value) = request.headers().get(header::AUTHORIZATION) {
        let text = value.to_str().ok()?;
        let (scheme, token) = text.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim());
    }
    params
        .iter()
        .find(|(name, _)| name == TOKEN_PARAM)
        .map(|(_, value)| value.as_str())
}

fn unauthorized(code: &'static str, message: impl Into<String>) -> Rejection {
    Rejection::new(StatusCode::UNAUTHORIZED, code, message)
}

/// Who the request is: the host's identity, else a valid stream token.
pub(super) fn identify(
    notifier: &Notifier,
    request: &Request,
    params: &[(String, String)],
) -> Result<Caller, Rejection> {
    if request.extensions().get::<Identity>().is_some() {
        return Ok(Caller {
            identity: identity_of(request)?,
            grant: None,
            expires_at: None,
        });
    }
    let Some(token) = presented_token(request, params) else {
        // Also what a malformed `Authorization` header gets.
        return Err(if request.headers().contains_key(header::AUTHORIZATION) {
            unauthorized(
                "invalid_token",
                "the Authorization header is not `Bearer <token>`",
            )
        } else {
            identity_of(request).err().unwrap_or_else(|| {
                unauthorized("unauthenticated", "sign in to use the event stream")
            })
        });
    };
    verify(notifier, token)
}

#[cfg(feature = "service")]
fn verify(notifier: &Notifier, token: &str) -> Result<Caller, Rejection> {
    use crate::service::stream_token::StreamTokenError;
    let Some(service) = notifier.service() else {
        return Err(unauthorized(
            "invalid_token",
            "this server does not accept stream tokens",
        ));
    };
    match service.stream_key().verify(token) {
        Ok(claims) => Ok(Caller {
            identity: claims.identity(),
            expires_at: Some(claims.expires_at.saturating_mul(1000)),
            grant: Some(claims.channels),
        }),
        Err(StreamTokenError::Expired) => Err(unauthorized(
            "token_expired",
            "the stream token has expired; mint a new one",
        )),
        // The reason stays in the server's log at most: it helps a forger.
        Err(_) => Err(unauthorized(
            "invalid_token",
            "the stream token is not valid",
        )),
    }
}

#[cfg(not(feature = "service"))]
fn verify(_: &Notifier, _: &str) -> Result<Caller, Rejection> {
    Err(unauthorized(
        "invalid_token",
        "this server does not accept stream tokens",
    ))
}

/// Refuses (403) the first channel the caller may not join.
pub(super) async fn authorize(
    notifier: &Notifier,
    caller: &Caller,
    channels: &[Tag],
) -> Result<(), Rejection> {
    for channel in channels {
        let allowed = match &caller.grant {
            Some(grant) => grant.allows(channel),
            None => {
                notifier
                    .channel_policy()
                    .allows(&caller.identity, channel)
                    .await
            }
        };
        if !allowed {
            return Err(Rejection::new(
                StatusCode::FORBIDDEN,
                "channel_forbidden",
                format!("not allowed to join channel {channel}"),
            ));
        }
    }
    Ok(())
}
