//! Why a request to the layer's routes was refused, as an HTTP answer.
//!
//! The body is `{"error": "<code>", "message": "<for people>"}`: `error`
//! is a stable code a client can branch on (`too_many_clients`,
//! `bad_tag`, ...), `message` says what was wrong. Refusals that may pass
//! later carry `Retry-After`.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A refused request: status, code, message and, when waiting helps,
/// how long to wait.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Rejection {
    pub status: StatusCode,
    /// Stable and machine-readable.
    pub code: &'static str,
    pub message: String,
    /// Sent as `Retry-After`, in whole seconds rounded up (at least 1).
    pub retry_after: Option<Duration>,
    /// More fields of the body, beside `error` and `message` (which item
    /// of a batch was wrong, what was done before it).
    pub fields: Vec<(&'static str, serde_json::Value)>,
}

impl Rejection {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Rejection {
            status,
            code,
            message: message.into(),
            retry_after: None,
            fields: Vec::new(),
        }
    }

    /// 400: the request itself is wrong; repeating it will not help.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// Adds `name: value` to the body.
    pub fn with(mut self, name: &'static str, value: serde_json::Value) -> Self {
        self.fields.push((name, value));
        self
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let mut body = serde_json::Map::new();
        body.insert("error".into(), self.code.into());
        body.insert("message".into(), self.message.into());
        for (name, value) in self.fields {
            body.insert(name.into(), value);
        }
        let mut response =
            (self.status, axum::Json(serde_json::Value::Object(body))).into_response();
        if let Some(after) = self.retry_after {
            // A client that waits what it is told must not come back early.
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// A send the layer refused (a name or payload it cannot carry): the
/// caller's mistake, 400.
impl From<crate::EventError> for Rejection {
    fn from(error: crate::EventError) -> Self {
        Rejection::bad_request("bad_event", error.to_string())
    }
}

#[cfg(feature = "inbox")]
/// An inbox failure as an answer: the caller's mistakes are 400 or 404,
/// the rest 503 (the database or the writer may be back shortly).
impl From<crate::InboxError> for Rejection {
    fn from(error: crate::InboxError) -> Self {
        use crate::InboxError;
        let message = error.to_string();
        match error {
            InboxError::Event(e) => e.into(),
            InboxError::UnknownIds(_) => {
                Rejection::new(StatusCode::NOT_FOUND, "unknown_ids", message)
            }
            InboxError::NoInbox => {
                Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, "no_inbox", message)
            }
            InboxError::Store(_) | InboxError::Stopped => Rejection::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "inbox_unavailable",
                message,
            )
            .retry_after(Duration::from_secs(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_body_says_what_was_wrong_and_when_to_come_back() {
        let response = Rejection::new(StatusCode::SERVICE_UNAVAILABLE, "too_many_clients", "Full.")
            .retry_after(Duration::from_millis(1200))
            .into_response();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "2");
        assert_eq!(response.headers()["content-type"], "application/json");
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("body");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            json,
            serde_json::json!({ "error": "too_many_clients", "message": "Full." })
        );
    }
}
