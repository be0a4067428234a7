//! Cross-origin streams: a page on another site may open the stream only
//! if its origin is in `SseConfig::cors_origins` (empty by default: no
//! other site). Without credentials: such a page authenticates with a
//! stream token, never with this site's cookie.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Rejection;
use crate::notifier::Notifier;

/// The request's `Origin` when it is allowed.
pub(super) fn allowed_origin(notifier: &Notifier, request: &Request) -> Option<HeaderValue> {
    let origin = request.headers().get(header::ORIGIN)?;
    notifier
        .registry()
        .config()
        .cors_origins
        .iter()
        .any(|allowed| allowed.as_bytes() == origin.as_bytes())
        .then(|| origin.clone())
}

/// Lets the allowed origin's page read `response`.
pub(super) fn allow(response: &mut Response, origin: Option<HeaderValue>) {
    let headers = response.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("origin"));
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
}

/// `OPTIONS` on the stream: the browser asks before a cross-origin
/// request that sends `Authorization` or `Last-Event-ID`.
pub(super) async fn preflight(State(notifier): State<Notifier>, request: Request) -> Response {
    let Some(origin) = allowed_origin(&notifier, &request) else {
        return Rejection::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "this origin may not open the event stream",
        )
        .into_response();
    };
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, last-event-id, cache-control"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    allow(&mut response, Some(origin));
    response
}
