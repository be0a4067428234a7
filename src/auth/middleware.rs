//! Request-level auth: who is calling, whether a page needs sign-in, and
//! refusing state changes that come from other sites.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tower_sessions::Session;

use super::{Auth, SecureCookie};
use crate::error::{AppError, ErrorKind};
use crate::sse::ListingScope;

/// Pages that need a signed-in user; others redirect to the sign-in page
/// before any HTML is rendered.
const PROTECTED_PAGES: &[&str] = &["/home"];

/// What the `?next=` of a sign-in redirect escapes: everything but RFC
/// 3986's unreserved characters and `/`, so a path stays readable.
const NEXT_PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// The session cookie's name.
pub const COOKIE_NAME: &str = "sid";

/// Where the build's static files are served (`site_pkg_dir` in
/// Leptos.toml; a test keeps the two equal). They need no identity, and
/// reading the session for each would be a database query per file.
pub const STATIC_PREFIX: &str = "/pkg/";

/// Puts the signed-in user into the request: [`super::CurrentUser`] for
/// pages and server functions, the SSE layer's `Identity`, and what the
/// client listing may show. Redirects signed-out visitors of protected
/// pages to `/login?next=…`.
pub async fn identify(
    State(auth): State<Auth>,
    session: Session,
    mut request: Request,
    next: Next,
) -> Response {
    if request.uri().path().starts_with(STATIC_PREFIX) {
        return next.run(request).await;
    }
    let who = if is_stream_connect(&request) {
        auth.stream_user_of(&session).await
    } else {
        auth.user_of(&session).await
    };
    match who {
        Some((user, identity)) => {
            let scope = if user.is_admin {
                ListingScope::Everything
            } else {
                ListingScope::OwnClients(identity.user.clone())
            };
            let extensions = request.extensions_mut();
            extensions.insert(user);
            extensions.insert(identity);
            extensions.insert(Arc::new(scope));
        }
        None => {
            let path = request.uri().path();
            if request.method() == Method::GET && PROTECTED_PAGES.contains(&path) {
                let target = request
                    .uri()
                    .path_and_query()
                    .map_or(path, |pq| pq.as_str());
                let next = utf8_percent_encode(target, NEXT_PATH);
                return Redirect::to(&format!("/login?next={next}")).into_response();
            }
        }
    }
    next.run(request).await
}

/// A request to open an event stream: the one route where who a session
/// is may come from [`super::stream_sessions`].
fn is_stream_connect(request: &Request) -> bool {
    request.method() == Method::GET && request.uri().path() == crate::sse::STREAM_PATH
}

/// Refuses state-changing requests (anything but GET, HEAD, OPTIONS) sent
/// by another site: the browser's `Sec-Fetch-Site` says so, or an `Origin`
/// header names another host than the one addressed.
pub async fn refuse_cross_site(request: Request, next: Next) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if !safe {
        let headers = request.headers();
        let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        if headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|site| site == "cross-site")
        {
            return forbidden("cross-site requests may not change anything here");
        }
        if let Some(origin) = text(header::ORIGIN) {
            let origin_host = origin
                .split_once("://")
                .map(|(_, rest)| rest.trim_end_matches('/'));
            let host = text(header::HOST);
            if origin_host.is_none() || origin_host != host {
                return forbidden(&format!(
                    "requests from origin {origin:?} may not change anything here"
                ));
            }
        }
    }
    next.run(request).await
}

fn forbidden(message: &str) -> Response {
    AppError::new(ErrorKind::Forbidden, "cross_site", message).into_response()
}

/// With [`SecureCookie::Auto`], marks the session cookie `Secure` when the
/// request reached the proxy in front over https.
pub async fn secure_cookie(State(auth): State<Auth>, request: Request, next: Next) -> Response {
    let https = auth.config().secure_cookie == SecureCookie::Auto
        && request
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let mut response = next.run(request).await;
    if https {
        let headers = response.headers_mut();
        let cookies: Vec<HeaderValue> = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .cloned()
            .collect();
        headers.remove(header::SET_COOKIE);
        for cookie in cookies {
            let secured = match cookie.to_str() {
                Ok(text)
                    if text.starts_with(&format!("{COOKIE_NAME}="))
                        && !text.contains("; Secure") =>
                {
                    HeaderValue::from_str(&format!("{text}; Secure")).unwrap_or(cookie)
                }
                _ => cookie,
            };
            headers.append(header::SET_COOKIE, secured);
        }
    }
    response
}
