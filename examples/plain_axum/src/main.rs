//! `cargo run -p plain_axum_example` then, in another terminal:
//!
//! ```text
//! curl -c ann -H 'content-type: application/json' -d '{"name":"ann"}' localhost:3100/login
//! curl -b ann -N localhost:3100/api/sse
//! curl -c bob -H 'content-type: application/json' -d '{"name":"bob"}' localhost:3100/login
//! curl -b bob -H 'content-type: application/json' -d '{"to":"ann","text":"hi"}' localhost:3100/send
//! ```

use std::net::SocketAddr;
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3100".into());
    let database_url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://example.db?mode=rwc".into());
    let app = plain_axum_example::build(&database_url, Duration::from_secs(10)).await?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let notifier = app.notifier.clone();
    axum::serve(
        listener,
        app.router
            .into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = tokio::signal::ctrl_c().await;
        // Ends the open streams, so that the server can stop.
        notifier.shutdown();
    })
    .await?;
    Ok(())
}
