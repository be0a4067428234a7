//! Log output: what is logged comes from `RUST_LOG` (default `info`), how
//! it is written from `log.format` (text or one JSON object per line).
//! Logs go to stderr: stdout carries a command's output (`admin list`).

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the process's subscriber. An unreadable `RUST_LOG` is an
/// error, not a silent fallback: the operator asked for something.
pub fn init(format: LogFormat) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(&directives)
            .map_err(|e| format!("RUST_LOG={directives:?} cannot be read: {e}"))?,
        _ => EnvFilter::new("info"),
    };
    use std::io::IsTerminal;
    // Colours for a person at a terminal only: a log file or a collector
    // gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        // Each line carries the spans it was logged in, outermost first
        // (the request's or the stream's, then e.g. the session layer's).
        LogFormat::Json => builder
            .json()
            .with_current_span(false)
            .with_span_list(true)
            .try_init(),
    };
    installed.map_err(|e| format!("cannot install the logger: {e}"))
}
