//! A plain axum app that uses `axum_sse_notify`: its own sign-in
//! ([`sign_in`]), live events ([`live`]) and an inbox on SQLite
//! ([`inbox`]). `main.rs` serves it; `tests/over_http.rs` runs it.

pub mod inbox;
pub mod live;
pub mod sign_in;

use std::time::Duration;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum_sse_notify::{InboxConfig, Notifier, SseConfig};
use sqlx::sqlite::SqlitePoolOptions;

/// The app, with its notifier (the handle every backend module sends
/// with) and the tasks it started.
pub struct App {
    pub router: Router,
    pub notifier: Notifier,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Builds the app on the SQLite database at `database_url` (created if
/// missing), ticking every `tick`.
pub async fn build(database_url: &str, tick: Duration) -> Result<App, Box<dyn std::error::Error>> {
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect(database_url)
        .await?;
    axum_sse_notify::inbox::schema::migrate_sqlite(&pool).await?;
    let notifier = Notifier::with_inbox(SseConfig::default(), pool, InboxConfig::default());
    let mut tasks = notifier.inbox()?.spawn_maintenance();
    tasks.push(live::spawn_ticker(notifier.clone(), tick));
    let sessions = sign_in::Sessions::default();
    let router = Router::new()
        .merge(live::routes())
        .merge(inbox::routes())
        .with_state(notifier.clone())
        .merge(sign_in::routes(sessions.clone()))
        .layer(from_fn_with_state(sessions, sign_in::identify));
    Ok(App {
        router,
        notifier,
        tasks,
    })
}
