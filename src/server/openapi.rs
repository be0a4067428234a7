//! `GET /api/openapi.json`: the HTTP API described as OpenAPI 3.1, the
//! layer's routes (stream, listing, publish, stream tokens) and the app's
//! own (sign-in, the demo's sends, the inbox, rooms, probes). A test
//! compares it with the routes the server really has.

use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::sse::Mount;

/// Where the document is served.
pub const PATH: &str = "/api/openapi.json";

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn error(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema("Error") } } })
}

/// A server function: `POST`, a JSON body (or a form), a JSON answer,
/// errors as `{"error","message"}`.
fn server_fn(id: &str, summary: &str, body: Value, answer: Value, form: bool) -> Value {
    let media = if form {
        "application/x-www-form-urlencoded"
    } else {
        "application/json"
    };
    json!({ "post": {
        "operationId": id,
        "summary": summary,
        "security": if form { json!([{}]) } else { json!([{ "sessionCookie": [] }]) },
        "requestBody": { "required": true, "content": { media: { "schema": body } } },
        "responses": {
            "200": { "description": "Done", "content": { "application/json": { "schema": answer } } },
            "400": error("Bad input (`bad_request` and the function's own codes)"),
            "401": error("`unauthenticated`"),
            "403": error("`forbidden`, `cross_site`"),
            "429": error("Over a rate (with Retry-After)"),
            "503": error("A store is unavailable (with Retry-After)")
        }
    } })
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({ "type": "object", "properties": properties, "required": required })
}

/// The app's own paths.
fn app_paths() -> Map<String, Value> {
    let credentials = object(
        json!({ "username": { "type": "string" }, "password": { "type": "string" }, "next": { "type": "string" } }),
        &["username", "password"],
    );
    let user = object(
        json!({ "id": { "type": "string" }, "username": { "type": "string" }, "isAdmin": { "type": "boolean" } }),
        &["id", "username"],
    );
    let empty = json!({ "type": "object" });
    let rooms = json!({ "type": "array", "items": { "type": "string" } });
    let room = object(json!({ "room": { "type": "string" } }), &["room"]);
    let delivered = object(
        json!({ "delivered": { "type": "integer" }, "id": { "type": "integer" } }),
        &["delivered"],
    );
    let ids = json!({ "type": "array", "items": { "type": "integer" } });
    let probe = |id: &str, summary: &str| {
        json!({ "get": { "operationId": id, "summary": summary, "security": [{}],
            "responses": { "200": { "description": "Healthy" }, "503": { "description": "Not ready" } } } })
    };
    let paths = json!({
        "/api/auth/signup": server_fn("signup", "Create an account and sign in (sets the session cookie)", credentials.clone(), user.clone(), true),
        "/api/auth/login": server_fn("login", "Sign in (sets the session cookie)", credentials, user.clone(), true),
        "/api/auth/logout": server_fn("logout", "Sign out: ends the session and its streams", empty.clone(), json!({ "type": "null" }), false),
        "/api/auth/me": server_fn("me", "The signed-in user, or null", empty.clone(), json!({ "oneOf": [user, { "type": "null" }] }), false),
        "/api/sse/test": server_fn("sendTest", "The demo's send to one user (or one client)",
            object(json!({ "user": { "type": "string" }, "event": { "type": "string" }, "message": { "type": "string" }, "client": { "type": "string" } }), &["user", "message"]),
            delivered.clone(), false),
        "/api/sse/broadcast": server_fn("broadcast", "The demo's send to everyone or to a tag (admins)",
            object(json!({ "event": { "type": "string" }, "message": { "type": "string" }, "tag": { "type": "string" } }), &["message"]),
            delivered, false),
        "/api/sse/stats": server_fn("liveStats", "Connection figures of every process", empty.clone(), json!({ "type": "object" }), false),
        "/api/inbox/list": server_fn("listInbox", "One page of the inbox, newest first",
            object(json!({ "before": { "type": "integer" }, "limit": { "type": "integer", "minimum": 1, "maximum": 100 } }), &[]),
            json!({ "type": "object" }), false),
        "/api/inbox/unread": server_fn("unreadCount", "The unread count", empty.clone(), json!({ "type": "integer" }), false),
        "/api/inbox/read": server_fn("markRead", "Marks these notifications read",
            object(json!({ "ids": ids }), &["ids"]), json!({ "type": "object" }), false),
        "/api/inbox/read-all": server_fn("markAllRead", "Marks everything (up to `upto`) read",
            object(json!({ "upto": { "type": "integer" } }), &[]), json!({ "type": "object" }), false),
        "/api/rooms/join": server_fn("joinRoom", "Joins a demo room: streams may then open with `tag=room:<name>`", room.clone(), rooms.clone(), false),
        "/api/rooms/leave": server_fn("leaveRoom", "Leaves a demo room", room, rooms.clone(), false),
        "/api/rooms/mine": server_fn("myRooms", "The caller's rooms", empty, rooms, false),
        PATH: { "get": { "operationId": "openapi", "summary": "This document", "security": [{}],
            "responses": { "200": { "description": "OpenAPI 3.1", "content": { "application/json": {} } } } } },
        "/healthz": probe("healthz", "Liveness"),
        "/readyz": probe("readyz", "Readiness (database, bus)"),
        "/metrics": { "get": { "operationId": "metrics", "summary": "Prometheus text (with `metrics.token` as Bearer)",
            "security": [{ "metricsToken": [] }],
            "responses": { "200": { "description": "Metrics", "content": { "text/plain": {} } }, "401": error("No or a wrong token"), "404": { "description": "Not served here" } } } }
    });
    paths.as_object().cloned().unwrap_or_default()
}

/// The whole document.
pub fn document() -> Value {
    let layer = crate::sse::route::openapi::describe(&Mount::default());
    let mut paths = layer.paths;
    paths.extend(app_paths());
    let mut schemes = layer.security_schemes;
    schemes.insert(
        "sessionCookie".into(),
        json!({ "type": "apiKey", "in": "cookie", "name": crate::auth::middleware::COOKIE_NAME,
                "description": "The session of `/api/auth/login`" }),
    );
    schemes.insert(
        "metricsToken".into(),
        json!({ "type": "http", "scheme": "bearer", "description": "`metrics.token`" }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "sse_notify",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Real-time notifications over Server-Sent Events: the stream, the publish API for other services, stream tokens, the inbox and the demo's endpoints. Every refusal is JSON `{\"error\": \"<code>\", \"message\": \"...\"}`."
        },
        "paths": paths,
        "components": { "schemas": layer.schemas, "securitySchemes": schemes }
    })
}

/// `GET /api/openapi.json`.
pub async fn serve() -> Response {
    axum::Json(document()).into_response()
}
