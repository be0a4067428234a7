//! Live events: the stream, a send from a handler, a send from a task.

use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use axum_sse_notify::{Identity, Notifier, Rejection, SseEvent, Target, UserId};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Message {
    pub from: String,
    pub text: String,
}

impl SseEvent for Message {
    const NAME: &'static str = "message";
}

#[derive(Serialize, Deserialize)]
pub struct Tick {
    pub n: u64,
}

impl SseEvent for Tick {
    const NAME: &'static str = "tick";
}

#[derive(Deserialize)]
pub struct Send {
    pub to: String,
    pub text: String,
}

/// `GET /api/sse` (the stream) and `POST /send`.
pub fn routes() -> Router<Notifier> {
    axum_sse_notify::routes().route("/send", post(send))
}

async fn send(
    State(notifier): State<Notifier>,
    me: Identity,
    Json(body): Json<Send>,
) -> Result<Json<usize>, Rejection> {
    let message = Message {
        from: me.username,
        text: body.text,
    };
    Ok(Json(
        notifier.send(&Target::user(UserId::new(body.to)), &message)?,
    ))
}

/// A background job: every `period`, a tick to everyone connected.
pub fn spawn_ticker(notifier: Notifier, period: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        for n in 0.. {
            interval.tick().await;
            let _ = notifier.broadcast(&Tick { n });
        }
    })
}
