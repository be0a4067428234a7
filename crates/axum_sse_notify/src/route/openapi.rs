//! The layer's routes as an OpenAPI 3.1 description: one path item per
//! route [`Mount`] serves, and the schemas they use. The host merges it
//! into its own document (and serves that); a test compares the document
//! with the routes actually mounted.

use serde_json::{Map, Value, json};

use super::Mount;

/// The layer's part of an OpenAPI document.
pub struct Description {
    /// `paths`: path → path item.
    pub paths: Map<String, Value>,
    /// `components.schemas`.
    pub schemas: Map<String, Value>,
    /// `components.securitySchemes` the layer's operations name:
    /// `sessionCookie` is the host's (it must define it), the others the
    /// layer's.
    pub security_schemes: Map<String, Value>,
}

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn ok(description: &str, name: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema(name) } } })
}

fn error(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema("Error") } } })
}

/// Describes the routes `mount` serves.
pub fn describe(mount: &Mount) -> Description {
    let mut paths = Map::new();
    paths.insert(mount.stream.clone(), stream());
    if let Some(path) = &mount.listing {
        paths.insert(path.clone(), listing());
    }
    if let Some(path) = &mount.presence {
        paths.insert(path.clone(), presence());
    }
    if cfg!(feature = "service") {
        if let Some(path) = &mount.publish {
            paths.insert(path.clone(), publish());
        }
        if let Some(path) = &mount.mint {
            paths.insert(path.clone(), mint());
        }
    }
    Description {
        paths,
        schemas: schemas(),
        security_schemes: security_schemes(),
    }
}

fn stream() -> Value {
    json!({
        "get": {
            "operationId": "stream",
            "summary": "The event stream (text/event-stream)",
            "description": "Opens with `retry:` and a `connected` event carrying the client id; then, on a fresh stream, an `inbox` summary and the unread notifications; then live events and `: ping` comments. A resume (`Last-Event-ID` header or `lastEventId`) replays what was missed, or sends `sse-reset`. Authenticated by the host's session, or by a stream token (Bearer or `access_token`).",
            "security": [ { "sessionCookie": [] }, { "streamToken": [] }, { "streamTokenQuery": [] } ],
            "parameters": [
                { "name": "tag", "in": "query", "schema": { "type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}:[A-Za-z0-9._-]{1,64}$" },
                  "description": "A channel to join (repeatable); allowed by the stream token's claims or the host's policy", "style": "form", "explode": true },
                { "name": "lastEventId", "in": "query", "schema": { "type": "string" }, "description": "Where to resume, for clients that cannot send the header" },
                { "name": "client", "in": "query", "schema": { "type": "string", "format": "uuid" }, "description": "The client id this connection had before (same session only)" },
                { "name": "presence", "in": "query", "schema": { "type": "boolean" }, "description": "Also receive `sse-presence` join/leave events for this stream's channels" },
                { "name": "Last-Event-ID", "in": "header", "schema": { "type": "string" } }
            ],
            "responses": {
                "200": { "description": "The stream", "content": { "text/event-stream": { "schema": { "type": "string" } } } },
                "400": error("Bad query: `bad_tag`, `reserved_tag`, `too_many_tags`, `bad_client_id`"),
                "401": error("`unauthenticated`, `invalid_token`, `token_expired`, `session_ended`"),
                "403": error("`channel_forbidden`"),
                "429": error("`too_many_connections`, `too_many_connections_from_address` (with Retry-After)"),
                "503": error("`too_many_clients`, `shutting_down` (with Retry-After)")
            }
        },
        "options": {
            "operationId": "streamPreflight",
            "summary": "CORS preflight: answered for origins in `cors_origins` only",
            "responses": { "204": { "description": "Allowed" }, "403": error("`origin_not_allowed`") }
        }
    })
}

fn listing() -> Value {
    json!({
        "get": {
            "operationId": "listClients",
            "summary": "The connections the caller may see, and the stats",
            "security": [ { "sessionCookie": [] } ],
            "parameters": [
                { "name": "userId", "in": "query", "schema": { "type": "string" }, "description": "A user id or a username" },
                { "name": "sessionId", "in": "query", "schema": { "type": "string" } },
                { "name": "clientIds", "in": "query", "schema": { "type": "string" }, "description": "Comma-separated client ids" }
            ],
            "responses": {
                "200": ok("Clients and stats", "ClientListing"),
                "400": error("`bad_query`, `bad_client_id`"),
                "401": error("`unauthenticated`")
            }
        }
    })
}

fn presence() -> Value {
    json!({
        "get": {
            "operationId": "presence",
            "summary": "A channel's members, or whether a user is online, in every process",
            "description": "A service token with the `presence` scope may ask anything; a session or a stream token, the channels it may join and its own user. Streams opened with `presence=true` also receive `sse-presence` events (`{channel, user, name, action: join|leave}`).",
            "security": [ { "sessionCookie": [] }, { "streamToken": [] }, { "serviceToken": ["presence"] } ],
            "parameters": [
                { "name": "channel", "in": "query", "schema": { "type": "string" }, "description": "`key:value`" },
                { "name": "user", "in": "query", "schema": { "type": "string" } }
            ],
            "responses": {
                "200": { "description": "Members or a user's presence", "content": { "application/json": { "schema": {
                    "oneOf": [ schema("ChannelPresence"), schema("UserPresence") ] } } } },
                "400": error("`bad_query`, `bad_tag`"),
                "401": error("`unauthenticated`, `invalid_token`, `token_expired`, `missing_token`"),
                "403": error("`presence_forbidden`, `insufficient_scope`")
            }
        }
    })
}

fn publish() -> Value {
    json!({
        "post": {
            "operationId": "publish",
            "summary": "Publish one event, or a batch (an array, published in order)",
            "security": [ { "serviceToken": ["publish"] } ],
            "requestBody": { "required": true, "content": { "application/json": { "schema": {
                "oneOf": [ schema("Publication"), { "type": "array", "items": schema("Publication"), "minItems": 1 } ]
            } } } },
            "responses": {
                "200": { "description": "One answer, or `{\"results\": [...]}` for a batch; header `Idempotent-Replayed: true` on a replayed single publication",
                         "content": { "application/json": { "schema": { "oneOf": [ schema("Published"), schema("PublishedBatch") ] } } } },
                "400": error("`bad_json`, `empty_batch`, `bad_event`, `payload_too_large`, `not_storable`, `no_target`, `too_many_targets`, `bad_user`, `bad_idempotency_key`, `duplicate_idempotency_key`, `no_inbox` (with `index` in a batch); nothing was published"),
                "401": error("`missing_token`, `invalid_token`"),
                "403": error("`insufficient_scope`"),
                "404": error("`service_mode_off`"),
                "409": error("`idempotency_key_in_flight` (with Retry-After)"),
                "413": error("`batch_too_large`"),
                "429": error("`rate_limited` (with Retry-After)"),
                "503": error("`busy`, `publish_failed` (with `published`, `results`: what went out before), `idempotency_unavailable`, `token_store_unavailable`")
            }
        }
    })
}

fn mint() -> Value {
    json!({
        "post": {
            "operationId": "mintStreamToken",
            "summary": "A short-lived stream token for one user",
            "security": [ { "serviceToken": ["subscribe"] } ],
            "requestBody": { "required": true, "content": { "application/json": { "schema": schema("MintRequest") } } },
            "responses": {
                "200": ok("The token (never cached: Cache-Control no-store)", "MintedToken"),
                "400": error("`bad_json`, `bad_ttl`, `bad_claim`"),
                "401": error("`missing_token`, `invalid_token`"),
                "403": error("`insufficient_scope`"),
                "404": error("`service_mode_off`")
            }
        }
    })
}

fn schemas() -> Map<String, Value> {
    let tag = json!({ "type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}:[A-Za-z0-9._-]{1,64}$", "examples": ["room:blue"] });
    let value = json!({
        "Error": {
            "type": "object", "required": ["error", "message"],
            "properties": {
                "error": { "type": "string", "description": "A stable code to branch on" },
                "message": { "type": "string", "description": "What was wrong, for people" },
                "index": { "type": "integer", "description": "The batch item at fault" },
                "published": { "type": "integer", "description": "Batch items published before the failure" },
                "results": { "type": "array", "items": schema("Published") }
            }
        },
        "Target": {
            "oneOf": [
                { "type": "object", "required": ["user"], "properties": { "user": { "type": "string" } }, "additionalProperties": false },
                { "type": "object", "required": ["users"], "properties": { "users": { "type": "array", "items": { "type": "string" }, "minItems": 1 } }, "additionalProperties": false },
                { "type": "object", "required": ["session"], "properties": { "session": { "type": "string" } }, "additionalProperties": false },
                { "type": "object", "required": ["clients"], "properties": { "clients": { "type": "array", "items": { "type": "string", "format": "uuid" }, "minItems": 1 } }, "additionalProperties": false },
                { "type": "object", "required": ["channel"], "properties": { "channel": tag }, "additionalProperties": false },
                { "type": "object", "required": ["tag"], "properties": { "tag": tag }, "additionalProperties": false },
                { "const": "everyone" }
            ]
        },
        "Publication": {
            "type": "object", "required": ["target", "event"], "additionalProperties": false,
            "properties": {
                "target": schema("Target"),
                "tags": { "type": "array", "items": tag, "description": "Narrows the target to clients carrying every one" },
                "event": { "type": "string", "minLength": 1, "maxLength": 128 },
                "data": { "description": "Any JSON; null when absent" },
                "persistent": { "type": "boolean", "default": false, "description": "Stored in the users' inbox first (users or everyone, no tags)" },
                "idempotencyKey": { "type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[!-~]+$" }
            }
        },
        "Published": {
            "type": "object", "required": ["connections"],
            "properties": {
                "connections": { "type": "integer", "description": "Connections of the receiving process it was queued for" },
                "inboxId": { "type": "integer" },
                "replayed": { "type": "boolean", "description": "The first request's answer to a repeated idempotency key" }
            }
        },
        "PublishedBatch": {
            "type": "object", "required": ["results"],
            "properties": { "results": { "type": "array", "items": schema("Published") } }
        },
        "MintRequest": {
            "type": "object", "required": ["user"], "additionalProperties": false,
            "properties": {
                "user": { "type": "string", "minLength": 1, "maxLength": 256 },
                "name": { "type": "string", "minLength": 1, "maxLength": 256 },
                "channels": { "type": "array", "items": { "type": "string", "examples": ["room:blue", "page:*"] } },
                "ttlSeconds": { "type": "integer", "minimum": 1 }
            }
        },
        "MintedToken": {
            "type": "object", "required": ["token", "expiresAt"],
            "properties": { "token": { "type": "string" }, "expiresAt": { "type": "integer", "description": "Unix seconds" } }
        },
        "ChannelPresence": {
            "type": "object", "required": ["channel", "members"],
            "properties": {
                "channel": tag,
                "members": { "type": "array", "items": { "type": "object", "required": ["user", "name"],
                    "properties": { "user": { "type": "string" }, "name": { "type": "string" } } } }
            }
        },
        "UserPresence": {
            "type": "object", "required": ["user", "online", "connections"],
            "properties": { "user": { "type": "string" }, "online": { "type": "boolean" }, "connections": { "type": "integer" } }
        },
        "ClientListing": {
            "type": "object", "required": ["clients", "stats"],
            "properties": {
                "clients": { "type": "array", "items": { "type": "object" } },
                "stats": { "type": "object" }
            }
        }
    });
    value.as_object().cloned().unwrap_or_default()
}

fn security_schemes() -> Map<String, Value> {
    let value = json!({
        "serviceToken": { "type": "http", "scheme": "bearer", "description": "A service token (`sse_notify token create`), scopes `publish`, `subscribe` and `presence`" },
        "streamToken": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "A stream token from `POST /api/tokens/stream`" },
        "streamTokenQuery": { "type": "apiKey", "in": "query", "name": super::TOKEN_PARAM, "description": "The stream token, for EventSource (keep it short-lived and out of logs)" }
    });
    value.as_object().cloned().unwrap_or_default()
}
