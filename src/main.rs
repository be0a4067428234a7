//! The server binary: configuration, logging, then [`sse_notify::server`];
//! or, with `admin …`, the operator's role commands; with `token …`, the
//! service token commands.

use std::process::ExitCode;
use std::time::Duration;

use sse_notify::admin::{self, AdminCommand};
use sse_notify::config::Config;
use sse_notify::server::{self, Stop};
use sse_notify::service_tokens::{self, TokenCommand};

/// mimalloc rather than glibc's malloc: with many long-lived connections
/// served from several threads, glibc's per-thread arenas keep freed
/// memory fragmented and RSS per connection kept growing (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// After the server has stopped, how long tasks still running (a stuck
/// handler, blocking work) may delay the exit.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(1);

/// An operator's command, run instead of serving.
enum Command {
    Admin(AdminCommand),
    Token(TokenCommand),
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.split_first() {
        None => Ok(None),
        Some((first, rest)) if first == "admin" => {
            AdminCommand::parse(rest).map(|c| Some(Command::Admin(c)))
        }
        Some((first, rest)) if first == "token" => {
            TokenCommand::parse(rest).map(|c| Some(Command::Token(c)))
        }
        Some((first, _)) => Err(format!(
            "unknown argument {first:?}\nusage: sse_notify (serve, configured by Leptos.toml and the environment)\n       {}\n       {}",
            admin::USAGE,
            service_tokens::USAGE
        )),
    };
    let command = match parsed {
        Ok(command) => command,
        Err(usage) => {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    };

    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = sse_notify::ops::logging::init(config.log) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match command {
        Some(command) => match runtime.block_on(async {
            match command {
                Command::Admin(command) => admin::run(&config, command).await,
                Command::Token(command) => service_tokens::run(&config, command).await,
            }
        }) {
            Ok(out) => {
                println!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        None => runtime.block_on(serve(config)),
    };
    // Never wait for a task that does not end (a stuck handler, a worker
    // blocked in a library): the process exits regardless.
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    code
}

async fn serve(config: Config) -> ExitCode {
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
    let grace = config.server.shutdown_timeout;
    let drain = config.server.drain_delay
        + config.server.drain_window
        + sse_notify::ops::drain::TICK
        + sse_notify::ops::drain::FLUSH;
    let signal = async move {
        let stop = server::shutdown_signal().await;
        let draining = if stop == Stop::Drain {
            drain
        } else {
            Duration::ZERO
        };
        server::exit_after(draining + grace + server::EXIT_MARGIN);
        stop
    };
    match server::run(listener, config, signal).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
