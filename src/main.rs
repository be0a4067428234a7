//! The server binary: configuration, logging, then [`sse_notify::server`].

use std::process::ExitCode;

use sse_notify::config::Config;
use sse_notify::server;
use tracing_subscriber::EnvFilter;

/// mimalloc rather than glibc's malloc: with many long-lived connections
/// served from several threads, glibc's per-thread arenas keep freed
/// memory fragmented and RSS per connection kept growing (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };

    match server::raise_fd_limit() {
        Some(limit) => tracing::info!(
            open_files = limit,
            max_clients = config.sse.max_clients,
            "open-files limit"
        ),
        None => tracing::warn!("cannot read the open-files limit"),
    }
    let addr = config.leptos.site_addr;
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("error: cannot listen on {addr} (leptos.site_addr / LEPTOS_SITE_ADDR): {e}");
            return ExitCode::from(2);
        }
    };

    match server::serve(listener, config, server::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
