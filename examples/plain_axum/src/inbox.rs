//! The inbox: notifications kept for users who are offline, with read
//! state.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_sse_notify::{
    Audience, Identity, InboxId, InboxPage, InboxSummary, Notifier, Rejection, SseEvent, UserId,
};
use serde::{Deserialize, Serialize};

use crate::live::Send;

#[derive(Serialize, Deserialize)]
pub struct Reminder {
    pub from: String,
    pub text: String,
}

impl SseEvent for Reminder {
    const NAME: &'static str = "reminder";
    const PERSISTENT: bool = true;
}

/// `POST /remind` (stored, then sent live), `GET /inbox`, `POST /inbox/read`.
pub fn routes() -> Router<Notifier> {
    Router::new()
        .route("/remind", post(remind))
        .route("/inbox", get(page))
        .route("/inbox/read", post(read))
}

async fn remind(
    State(notifier): State<Notifier>,
    me: Identity,
    Json(body): Json<Send>,
) -> Result<Json<InboxId>, Rejection> {
    let reminder = Reminder {
        from: me.username,
        text: body.text,
    };
    let to = Audience::user(UserId::new(body.to));
    Ok(Json(
        notifier.notify_from(&me.user, to, &reminder).await?.id,
    ))
}

async fn page(
    State(notifier): State<Notifier>,
    me: Identity,
) -> Result<Json<InboxPage>, Rejection> {
    Ok(Json(notifier.inbox()?.page(&me.user, None, 50).await?))
}

async fn read(
    State(notifier): State<Notifier>,
    me: Identity,
    Json(ids): Json<Vec<InboxId>>,
) -> Result<Json<InboxSummary>, Rejection> {
    Ok(Json(notifier.inbox()?.mark_read(&me.user, &ids).await?))
}
