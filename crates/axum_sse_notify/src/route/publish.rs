//! `POST /api/publish` (one publication or an array of them) and `POST
//! /api/tokens/stream` (mint a stream token), for other services, with a
//! service token in `Authorization: Bearer …`. Each use is logged with
//! the token's name, never its secret.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::Rejection;
use crate::channel::ChannelGrant;
use crate::notifier::Notifier;
use crate::service::Service;
use crate::service::publish::{Publication, PublishError, Published};
use crate::service::stream_token::{StreamTokenError, StreamTokenRequest};
use crate::service::token::{ServiceToken, TokenScope};
use crate::target::UserId;

/// The log target of service-mode requests (`RUST_LOG=axum_sse_notify::service=warn`).
pub const SERVICE_LOG: &str = "axum_sse_notify::service";

pub(super) fn service_of(notifier: &Notifier) -> Result<&Service, Rejection> {
    notifier.service().ok_or_else(|| {
        Rejection::new(
            StatusCode::NOT_FOUND,
            "service_mode_off",
            "this server does not take service requests",
        )
    })
}

/// The caller's service token, if it is valid and has `scope`.
pub(super) async fn authenticate(
    service: &Service,
    headers: &HeaderMap,
    scope: TokenScope,
) -> Result<ServiceToken, Rejection> {
    let unauthorized =
        |code, message: &str| Rejection::new(StatusCode::UNAUTHORIZED, code, message.to_string());
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized(
            "missing_token",
            "send `Authorization: Bearer <service token>`",
        ));
    };
    let secret = value
        .to_str()
        .ok()
        .and_then(|text| text.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, secret)| secret.trim())
        .ok_or_else(|| {
            unauthorized(
                "invalid_token",
                "the Authorization header is not `Bearer <token>`",
            )
        })?;
    let token = service
        .tokens()
        .authenticate(secret)
        .await
        .map_err(|e| {
            tracing::warn!(target: SERVICE_LOG, error = %e, "service token store unavailable");
            Rejection::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "token_store_unavailable",
                "service tokens cannot be checked now",
            )
            .retry_after(Duration::from_secs(1))
        })?
        .ok_or_else(|| unauthorized("invalid_token", "unknown or revoked service token"))?;
    if !token.may(scope) {
        tracing::info!(target: SERVICE_LOG, token = %token.name, scope = %scope, "refused: scope missing");
        return Err(Rejection::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("token {:?} lacks the `{scope}` scope", token.name),
        ));
    }
    Ok(token)
}

/// The body: one publication, or an array of them.
fn parse(body: &[u8]) -> Result<(Vec<Publication>, bool), Rejection> {
    let bad = |e: serde_json::Error| Rejection::bad_request("bad_json", e.to_string());
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let items: Vec<Publication> = serde_json::from_slice(body).map_err(bad)?;
        if items.is_empty() {
            return Err(Rejection::bad_request(
                "empty_batch",
                "the batch has no events",
            ));
        }
        Ok((items, true))
    } else {
        Ok((vec![serde_json::from_slice(body).map_err(bad)?], false))
    }
}

fn rejection(error: PublishError, batch: bool) -> Rejection {
    let indexed = |r: Rejection, index: usize| {
        if batch {
            r.with("index", index.into())
        } else {
            r
        }
    };
    match error {
        PublishError::Invalid {
            index,
            code,
            message,
        } => indexed(Rejection::bad_request(code, message), index),
        PublishError::TooMany { count, max } => Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!("{count} events in one request; at most {max}"),
        ),
        PublishError::InFlight { index } => indexed(
            Rejection::new(
                StatusCode::CONFLICT,
                "idempotency_key_in_flight",
                "a request with this idempotency key is being published; retry shortly",
            )
            .retry_after(Duration::from_secs(1)),
            index,
        ),
        PublishError::Keys(message, _) => Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "idempotency_unavailable",
            message,
        )
        .retry_after(Duration::from_secs(1)),
        PublishError::Failed {
            index,
            busy,
            message,
            done,
        } => {
            let code = if busy { "busy" } else { "publish_failed" };
            let published = serde_json::to_value(&done).unwrap_or_default();
            let r = Rejection::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
                .retry_after(Duration::from_secs(1))
                .with("published", done.len().into());
            indexed(r, index).with("results", published)
        }
    }
}

/// `POST /api/publish`.
pub(super) async fn publish(
    State(notifier): State<Notifier>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match publish_inner(&notifier, &headers, &body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn publish_inner(
    notifier: &Notifier,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Rejection> {
    let service = service_of(notifier)?;
    let token = authenticate(service, headers, TokenScope::Publish).await?;
    let (items, batch) = parse(body)?;
    let count = items.len();
    if let Err(wait) = service.take_rate(&token, count as u64).await {
        tracing::info!(target: SERVICE_LOG, token = %token.name, events = count, "refused: over the token's rate");
        return Err(Rejection::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "token {:?} may publish {} events per minute",
                token.name, token.rate_per_minute
            ),
        )
        .retry_after(wait));
    }
    let inbox = notifier.inbox().ok();
    let outcome = service
        .publish(notifier.bus(), inbox, &token.name, items)
        .await;
    let results = match outcome {
        Ok(results) => results,
        Err(error) => {
            tracing::warn!(target: SERVICE_LOG, token = %token.name, events = count, ?error, "publish refused");
            return Err(rejection(error, batch));
        }
    };
    let replayed = results.iter().filter(|r| r.replayed).count();
    tracing::info!(target: SERVICE_LOG, token = %token.name, events = count, replayed, "published");
    Ok(answer(results, batch))
}

fn answer(mut results: Vec<Published>, batch: bool) -> Response {
    if batch {
        return axum::Json(serde_json::json!({ "results": results })).into_response();
    }
    let Some(one) = results.pop() else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let replayed = one.replayed;
    let mut response = axum::Json(one).into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// The body of `POST /api/tokens/stream`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MintRequest {
    user: UserId,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    channels: ChannelGrant,
    /// Seconds; the configured default when absent.
    #[serde(default)]
    ttl_seconds: Option<u64>,
}

/// `POST /api/tokens/stream`: a stream token for one user.
pub(super) async fn mint(
    State(notifier): State<Notifier>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match mint_inner(&notifier, &headers, &body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn mint_inner(
    notifier: &Notifier,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Rejection> {
    let service = service_of(notifier)?;
    let token = authenticate(service, headers, TokenScope::Subscribe).await?;
    let request: MintRequest = serde_json::from_slice(body)
        .map_err(|e| Rejection::bad_request("bad_json", e.to_string()))?;
    let ttl = request
        .ttl_seconds
        .map_or(service.config().stream_token_ttl, Duration::from_secs);
    let minted = service
        .mint(&StreamTokenRequest {
            user: request.user.clone(),
            name: request.name,
            channels: request.channels,
            ttl,
        })
        .map_err(|e| match e {
            StreamTokenError::BadTtl { .. } => Rejection::bad_request("bad_ttl", e.to_string()),
            StreamTokenError::BadClaim(_) => Rejection::bad_request("bad_claim", e.to_string()),
            other => Rejection::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "mint_failed",
                other.to_string(),
            ),
        })?;
    tracing::info!(target: SERVICE_LOG, token = %token.name, user = %request.user, ttl = ttl.as_secs(), "stream token minted");
    let mut response = axum::Json(minted).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
