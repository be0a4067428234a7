//! The error type of the app's server functions.
//!
//! Its JSON form is `{"error": "<code>", "message": "<for people>"}`, the
//! same shape as the SSE routes' errors, so a client handles one shape.
//! Constructing one on the server also sets the HTTP status of the
//! response being built (unless the caller is a browser's plain form post,
//! which gets redirected back to the form instead); malformed requests (bad
//! JSON, missing fields) become 400 the same way.

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    pub error: String,
    pub message: String,
}

impl AppError {
    /// An error answered with `status` (when built on the server).
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        set_response_status(status);
        AppError {
            error: code.to_string(),
            message: message.into(),
        }
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "internal", message)
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
                Self::new(405, "method_not_allowed", e)
            }
            ServerFnErrorErr::Request(e) => Self::new(503, "unreachable", e),
            other => Self::new(500, "internal", other.to_string()),
        }
    }
}

#[cfg(feature = "ssr")]
fn set_response_status(status: u16) {
    use axum::http::{HeaderValue, StatusCode, header};
    use leptos::prelude::use_context;
    // A browser's plain form post (before hydration) is answered with a
    // redirect back to the form, the error encoded in the URL; a status
    // set here would replace that redirect. Likewise a page being rendered
    // keeps its own status.
    let from_html_page = use_context::<axum::http::request::Parts>().is_some_and(|parts| {
        parts
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"))
    });
    if from_html_page {
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

#[cfg(not(feature = "ssr"))]
fn set_response_status(_status: u16) {}
