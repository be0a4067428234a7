//! The one error type of the app's HTTP answers: server functions, the
//! SSE routes and the request checks all answer with it.
//!
//! Its JSON form is `{"error": "<code>", "message": "<for people>"}`, so a
//! client handles one shape. The status comes from the error's
//! [`ErrorKind`], chosen in one place ([`ErrorKind::status`]). Returned by
//! a server function, it sets the status (and `Retry-After`) of the
//! response when it is encoded (unless the caller is a browser's plain
//! form post, which gets redirected back to the form instead); malformed
//! requests (bad JSON, missing fields) become 400 the same way. In axum
//! handlers and middleware it is a response of its own (`IntoResponse`).
//! Building one has no side effect: Leptos's context is thread-local, and
//! touching it from a plain axum handler could reach another request's.

use std::time::Duration;

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use leptos::server_fn::{Bytes, Encodes};
use serde::{Deserialize, Serialize};

/// What kind of failure, which decides the HTTP status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or asks for something invalid.
    BadRequest,
    /// No signed-in user, or wrong credentials.
    Unauthenticated,
    /// Signed in, but not allowed.
    Forbidden,
    /// What the request names does not exist (for this user).
    NotFound,
    MethodNotAllowed,
    /// The request (its body) did not arrive in time.
    Timeout,
    /// Conflicts with what exists (e.g. a username taken).
    Conflict,
    TooLarge,
    /// A per-user or per-address limit; retry later.
    TooManyRequests,
    /// A fault of the server.
    #[default]
    Internal,
    /// The server cannot take this now (full, shutting down, unreachable).
    Unavailable,
}

impl ErrorKind {
    /// The HTTP status of each kind: the only place statuses are chosen.
    pub const fn status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Unauthenticated => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::Timeout => 408,
            Self::Conflict => 409,
            Self::TooLarge => 413,
            Self::TooManyRequests => 429,
            Self::Internal => 500,
            Self::Unavailable => 503,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    /// Not in the JSON (the status carries it); on the browser side, an
    /// error decoded from a response reads as `Internal`.
    #[serde(skip)]
    pub kind: ErrorKind,
    /// Stable, machine-readable code (e.g. `too_many_clients`).
    pub error: String,
    /// For people.
    pub message: String,
    /// Sent as `Retry-After` (whole seconds, at least 1) when set.
    #[serde(skip)]
    pub retry_after: Option<Duration>,
}

impl AppError {
    pub fn new(kind: ErrorKind, code: &str, message: impl Into<String>) -> Self {
        AppError {
            kind,
            error: code.to_string(),
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, code, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, "internal", message)
    }

    /// Tells the client when to try again (`Retry-After`).
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        // On the server, a decoding failure can only be the request's:
        // the codec reports bad arguments as `Deserialization`.
        let on_server = cfg!(feature = "ssr");
        match value {
            ServerFnErrorErr::Args(e) | ServerFnErrorErr::MissingArg(e) => {
                Self::bad_request("bad_request", format!("the request body is not valid: {e}"))
            }
            ServerFnErrorErr::Deserialization(e) if on_server => {
                Self::bad_request("bad_request", format!("the request body is not valid: {e}"))
            }
            ServerFnErrorErr::UnsupportedRequestMethod(e) => {
                Self::new(ErrorKind::MethodNotAllowed, "method_not_allowed", e)
            }
            ServerFnErrorErr::Request(e) => Self::new(ErrorKind::Unavailable, "unreachable", e),
            other => Self::internal(other.to_string()),
        }
    }

    /// Called by a server function answering with this error, inside its
    /// request's context: the place where the status is set.
    fn ser(&self) -> Bytes {
        set_response_status(self.kind.status());
        if let Some(after) = self.retry_after {
            set_retry_after(after);
        }
        <JsonEncoding as Encodes<Self>>::encode(self).unwrap_or_else(|e| {
            let message = format!("cannot encode an error: {e}");
            let body = serde_json::json!({ "error": "internal", "message": message });
            Bytes::from(body.to_string())
        })
    }
}

#[cfg(feature = "ssr")]
impl axum::response::IntoResponse for AppError {
    fn into_response(self) -> axum::response::Response {
        use axum::http::{HeaderValue, StatusCode, header};
        let status =
            StatusCode::from_u16(self.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::json!({ "error": self.error, "message": self.message });
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(after) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_secs(after)));
        }
        response
    }
}

/// Inside a server function: whether the response must stay as Leptos
/// builds it, because the caller is a browser's plain form post (before
/// hydration, answered with a redirect back to the form, the error in the
/// URL) or a page being rendered (it keeps its own status).
#[cfg(feature = "ssr")]
fn answers_html() -> bool {
    use axum::http::header;
    use leptos::prelude::use_context;
    use_context::<axum::http::request::Parts>().is_some_and(|parts| {
        parts
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"))
    })
}

#[cfg(feature = "ssr")]
fn set_response_status(status: u16) {
    use axum::http::{HeaderValue, StatusCode, header};
    use leptos::prelude::use_context;
    if answers_html() {
        return;
    }
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response
            .set_status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
        response.insert_header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
}

#[cfg(feature = "ssr")]
fn set_retry_after(after: Duration) {
    use axum::http::{HeaderValue, header};
    use leptos::prelude::use_context;
    if answers_html() {
        return;
    }
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.insert_header(header::RETRY_AFTER, HeaderValue::from(retry_secs(after)));
    }
}

/// `Retry-After` in whole seconds, rounded up (a client that waits what
/// it is told must not come back early), at least 1.
#[cfg(feature = "ssr")]
fn retry_secs(after: Duration) -> u64 {
    after.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(not(feature = "ssr"))]
fn set_response_status(_status: u16) {}

#[cfg(not(feature = "ssr"))]
fn set_retry_after(_after: Duration) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_carries_code_and_message_only() {
        let error = AppError::new(ErrorKind::TooManyRequests, "slow_down", "Wait.")
            .retry_after(Duration::from_secs(3));
        let json = serde_json::to_value(&error).unwrap();
        assert_eq!(
            json,
            serde_json::json!({ "error": "slow_down", "message": "Wait." })
        );
        assert_eq!(error.kind.status(), 429);
    }

    #[cfg(feature = "ssr")]
    #[test]
    fn as_a_response_the_status_comes_from_the_kind() {
        use axum::response::IntoResponse;
        let response = AppError::new(ErrorKind::Unavailable, "full", "Full.")
            .retry_after(Duration::from_millis(200))
            .into_response();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(response.headers()["content-type"], "application/json");
    }
}
