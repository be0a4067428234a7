//! One span per request, so that every line logged while answering it
//! carries its method, path and id. The id is the caller's `x-request-id`
//! when it sends a plausible one (a proxy's), else a new one; either way
//! it is sent back in the response's `x-request-id`.

use std::time::Instant;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

const HEADER: &str = "x-request-id";
/// Longest id taken from a caller.
const MAX_ID_LEN: usize = 64;

pub async fn request_span(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| plausible(v))
        .map(str::to_string)
        .unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
    let span = tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), id = %id);
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::debug!(
            status = response.status().as_u16(),
            micros = started.elapsed().as_micros() as u64,
            "answered"
        );
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

fn plausible(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_short_plain_ids_are_taken_from_the_caller() {
        assert!(super::plausible("3f2a-9c_1.x"));
        assert!(!super::plausible(""));
        assert!(!super::plausible("a b"));
        assert!(!super::plausible(&"a".repeat(65)));
    }
}
