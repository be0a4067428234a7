//! Requests that are malformed by RFC 9112 are refused before routing,
//! whichever connection path read them: a target that is not origin-form
//! or absolute-form (§3.2.3, §3.2.4), and an HTTP/1.1 request without
//! exactly one valid `Host` (§3.2). Leptos assumes a path in every target
//! (an authority-form one panicked inside it).

use axum::extract::Request;
use axum::http::uri::Authority;
use axum::http::{Method, Version, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::AppError;

/// Refuses the request with 400 and a JSON body if its first line or its
/// `Host` is malformed.
pub async fn check_request_line(request: Request, next: Next) -> Response {
    match malformed(&request) {
        Some(error) => {
            let mut response = error.into_response();
            // What follows on this connection cannot be trusted either.
            response.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            response
        }
        None => next.run(request).await,
    }
}

fn malformed(request: &Request) -> Option<AppError> {
    let uri = request.uri();
    if uri.path_and_query().is_none() {
        return Some(AppError::bad_request(
            "bad_request_target",
            "the request target must be a path (authority-form is only for proxies)",
        ));
    }
    if uri.path() == "*" && request.method() != Method::OPTIONS {
        return Some(AppError::bad_request(
            "bad_request_target",
            "the request target `*` is only allowed with OPTIONS",
        ));
    }
    if request.version() == Version::HTTP_11 {
        let mut hosts = request.headers().get_all(header::HOST).iter();
        let (first, second) = (hosts.next(), hosts.next());
        let message = match (first, second) {
            (None, _) => Some("an HTTP/1.1 request must have a Host header"),
            (Some(_), Some(_)) => Some("a request must have one Host header, not several"),
            (Some(host), None) if !valid_host(host.as_bytes()) => {
                Some("the Host header is not a valid host[:port]")
            }
            _ => None,
        };
        if let Some(message) = message {
            return Some(AppError::bad_request("bad_host", message));
        }
    }
    None
}

/// `uri-host [":" port]`, or empty (allowed when the target has no
/// authority). No user info, no path.
fn valid_host(value: &[u8]) -> bool {
    if value.is_empty() {
        return true;
    }
    match Authority::try_from(value) {
        Ok(authority) => !authority.as_str().contains('@'),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn request(method: &str, target: &str, hosts: &[&str]) -> Request {
        let mut builder = Request::builder().method(method).uri(target);
        for host in hosts {
            builder = builder.header("host", *host);
        }
        builder.body(Body::empty()).unwrap()
    }

    fn code(method: &str, target: &str, hosts: &[&str]) -> Option<String> {
        malformed(&request(method, target, hosts)).map(|e| e.error)
    }

    #[test]
    fn targets() {
        assert_eq!(code("GET", "/", &["x"]).as_deref(), None);
        assert_eq!(code("GET", "/a?b=c", &["x:80"]).as_deref(), None);
        assert_eq!(code("GET", "http://x/a", &["x"]).as_deref(), None);
        assert_eq!(code("OPTIONS", "*", &["x"]).as_deref(), None);
        assert_eq!(
            code("GET", "127.0.0.1:3000", &["x"]).as_deref(),
            Some("bad_request_target")
        );
        assert_eq!(
            code("GET", "*", &["x"]).as_deref(),
            Some("bad_request_target")
        );
    }

    #[test]
    fn hosts() {
        assert_eq!(code("GET", "/", &[]).as_deref(), Some("bad_host"));
        assert_eq!(code("GET", "/", &["a", "b"]).as_deref(), Some("bad_host"));
        assert_eq!(code("GET", "/", &["a b"]).as_deref(), Some("bad_host"));
        assert_eq!(
            code("GET", "/", &["user@host"]).as_deref(),
            Some("bad_host")
        );
        assert_eq!(
            code("GET", "/", &["host/path"]).as_deref(),
            Some("bad_host")
        );
        assert_eq!(code("GET", "/", &[""]).as_deref(), None);
        assert_eq!(code("GET", "/", &["[::1]:3000"]), None);
        // HTTP/1.0 requests may omit it.
        let mut old = request("GET", "/", &[]);
        *old.version_mut() = Version::HTTP_10;
        assert!(malformed(&old).is_none());
    }
}
