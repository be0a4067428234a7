//! BASELINE FOR BENCHMARKS ONLY — not part of the product.
//!
//! The naive SSE server people write first: axum's `Sse` response over a
//! `tokio::sync::broadcast` channel, no identity, no targeting, no limits.
//! `make bench` measures it with the same load generator as the real
//! server, so every figure in BENCHMARKS.md is also a ratio.
//!
//! `GET /sse` streams, `POST /publish` (body = data) broadcasts,
//! `GET /count` answers the number of subscribers.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use futures::Stream;
use tokio::sync::broadcast;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::var("BASELINE_ADDR").unwrap_or_else(|_| "127.0.0.1:3100".into());
    let (tx, _) = broadcast::channel::<String>(256);
    let app = Router::new()
        .route("/sse", get(sse))
        .route("/publish", post(publish))
        .route("/count", get(count))
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("baseline listening on http://{addr}");
    axum::serve(listener, app).await
}

async fn sse(
    State(tx): State<broadcast::Sender<String>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = tx.subscribe();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(data) => return Some((Ok(Event::default().event("bench").data(data)), rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(45)))
}

async fn publish(State(tx): State<broadcast::Sender<String>>, body: String) -> String {
    tx.send(body).unwrap_or(0).to_string()
}

async fn count(State(tx): State<broadcast::Sender<String>>) -> String {
    tx.receiver_count().to_string()
}
