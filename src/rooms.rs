//! Demo rooms: a signed-in user joins a room, and from then on may open
//! streams on the channel `room:<name>` (the demo's channel policy,
//! `auth::channels`, checks membership). Server functions at fixed paths
//! (JSON bodies):
//!
//! - `POST /api/rooms/join` `{room}`: joins; answers the user's rooms.
//! - `POST /api/rooms/leave` `{room}`: leaves; answers the user's rooms.
//! - `POST /api/rooms/mine` `{}`: the user's rooms.
//!
//! Leaving does not end a stream already on the channel; the next
//! connect is refused.

use leptos::prelude::*;
use leptos::server_fn::codec::Json;

use crate::error::AppError;

/// A room name: what a tag value may be (1 to 64 of ASCII letters,
/// digits, `-`, `_`, `.`).
pub fn check_room(room: &str) -> Result<(), AppError> {
    crate::sse::Tag::new("room", room)
        .map(|_| ())
        .map_err(|e| AppError::bad_request("bad_room", e.to_string()))
}

#[server(prefix = "/api", endpoint = "rooms/join", input = Json)]
pub async fn join_room(room: String) -> Result<Vec<String>, AppError> {
    check_room(&room)?;
    let (db, user) = server::context()?;
    if !db.join_room(&user, &room).await.map_err(server::error)? {
        return Err(AppError::bad_request(
            "too_many_rooms",
            format!(
                "at most {} rooms per user; leave one first",
                crate::store::rooms::MAX_ROOMS_PER_USER
            ),
        ));
    }
    db.rooms_of(&user).await.map_err(server::error)
}

#[server(prefix = "/api", endpoint = "rooms/leave", input = Json)]
pub async fn leave_room(room: String) -> Result<Vec<String>, AppError> {
    check_room(&room)?;
    let (db, user) = server::context()?;
    db.leave_room(&user, &room).await.map_err(server::error)?;
    db.rooms_of(&user).await.map_err(server::error)
}

#[server(prefix = "/api", endpoint = "rooms/mine", input = Json)]
pub async fn my_rooms() -> Result<Vec<String>, AppError> {
    let (db, user) = server::context()?;
    db.rooms_of(&user).await.map_err(server::error)
}

#[cfg(feature = "ssr")]
mod server {
    use leptos::prelude::use_context;

    use crate::auth::Auth;
    use crate::error::{AppError, ErrorKind};
    use crate::store::{Db, StoreError};

    pub(super) fn context() -> Result<(Db, String), AppError> {
        let user = crate::auth::api::server::require_user()?;
        let auth = use_context::<Auth>()
            .ok_or_else(|| AppError::internal("auth is not in the server's context"))?;
        Ok((auth.db().clone(), user.id))
    }

    pub(super) fn error(e: StoreError) -> AppError {
        tracing::error!(error = %e, "rooms request failed");
        AppError::new(
            ErrorKind::Unavailable,
            "rooms_unavailable",
            "rooms cannot be reached now; try again",
        )
        .retry_after(std::time::Duration::from_secs(2))
    }
}
