//! This app's own sign-in, nothing to do with the SSE layer: `POST /login`
//! with a name gives a random session token in a cookie; the middleware
//! turns the cookie back into a user. (No passwords: it is an example.)
//!
//! What concerns the layer: the middleware inserts an [`Identity`]
//! request extension, which is how the layer learns who a request is
//! (and what handlers take as an argument: 401 without it).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use axum_sse_notify::{Identity, Rejection, SessionId, UserId};
use serde::Deserialize;

const COOKIE: &str = "example_session";
const MAX_NAME: usize = 64;

/// Signed-in sessions: token → identity.
#[derive(Clone, Default)]
pub struct Sessions(Arc<RwLock<HashMap<String, Identity>>>);

#[derive(Deserialize)]
struct Login {
    name: String,
}

pub fn routes(sessions: Sessions) -> Router {
    Router::new()
        .route("/login", post(login))
        .with_state(sessions)
}

async fn login(State(sessions): State<Sessions>, Json(login): Json<Login>) -> Response {
    let name = login.name.trim();
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        let message = format!("a name is 1 to {MAX_NAME} printable characters");
        return Rejection::bad_request("bad_name", message).into_response();
    }
    let token = uuid::Uuid::new_v4().simple().to_string();
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let identity = Identity {
        user: UserId::new(name),
        username: name.to_string(),
        session: SessionId::new(uuid::Uuid::new_v4().to_string()),
        tags: Vec::new(),
        since: Some(since),
    };
    if let Ok(mut map) = sessions.0.write() {
        map.insert(token.clone(), identity);
    }
    let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
    ([(header::SET_COOKIE, cookie)], StatusCode::NO_CONTENT).into_response()
}

/// Middleware: the cookie's identity as a request extension.
pub async fn identify(
    State(sessions): State<Sessions>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .map(str::to_owned);
    let identity = token.and_then(|t| sessions.0.read().ok()?.get(&t).cloned());
    if let Some(identity) = identity {
        request.extensions_mut().insert(identity);
    }
    next.run(request).await
}
