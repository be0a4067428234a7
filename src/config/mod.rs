//! Typed runtime configuration.
//!
//! Values come from three layers, highest first:
//! 1. an environment variable named `SECTION_KEY` in upper case
//!    (`LEPTOS_SITE_ADDR`, `SERVER_SHUTDOWN_TIMEOUT`; top-level keys use
//!    just `KEY`, e.g. `DATA_DIR`);
//! 2. `Leptos.toml` (or the file named by `CONFIG_FILE`);
//! 3. the defaults written in [`KEYS`].
//!
//! Every value, whichever layer it comes from, is parsed by the same code,
//! so `SSE_PING_INTERVAL=45s` and `ping_interval = "45s"` mean the same
//! thing. A bad value is reported with the key, the layer and the reason;
//! a key the app does not know is an error too, because a typo that is
//! silently ignored is worse than a refusal to start.

mod error;
mod keys;
mod layers;
mod value;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use leptos::config::LeptosOptions;

use crate::auth::AuthConfig;
use crate::sse::partition::Partitions;
use crate::sse::{BusConfig, InboxConfig, ServiceConfig, SseConfig};

pub use error::{ConfigError, Origin};
pub use keys::{KEYS, KeySpec, markdown_table};
pub use value::ConfigValue;

use layers::Layers;
use value::{ByteSize, IpList, LeptosEnv, List, LogFormatValue, OptionalAddr, SecureCookieValue};

/// The file read when `CONFIG_FILE` is not set. Missing means defaults.
pub const DEFAULT_FILE: &str = "Leptos.toml";

/// The whole runtime configuration, parsed and checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// `None` means the embedded SQLite file under `data_dir`.
    pub database_url: Option<String>,
    pub leptos: LeptosOptions,
    pub sse: SseConfig,
    pub inbox: InboxConfig,
    pub service: ServiceConfig,
    pub bus: BusConfig,
    pub auth: AuthConfig,
    pub server: ServerConfig,
    pub metrics: MetricsConfig,
    pub log: LogFormat,
}

/// `[metrics]`: where `/metrics` is served, if anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Off: nothing extra is counted and `/metrics` is not served.
    pub enabled: bool,
    /// A listener of its own, without a token.
    pub addr: Option<SocketAddr>,
    /// `addr` is the default, not asked for (left out, or restated in the
    /// file as the shipped `Leptos.toml` does): when it is taken, by
    /// another process on this host, the server starts without it.
    pub addr_is_default: bool,
    /// On the main address, to this bearer token.
    pub token: Option<String>,
}

/// `log.format`: how log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `[server]`: process-level behaviour.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub shutdown_timeout: Duration,
    /// Slow or silent clients cannot hold a connection without a request.
    pub header_timeout: Duration,
    /// ... nor trickle a request body.
    pub body_timeout: Duration,
    /// A socket that accepts no bytes for this long is closed (the key is
    /// `sse.client_timeout`: it is what ends a stream nobody reads).
    pub client_timeout: Duration,
    /// Largest request body, in bytes.
    pub max_body: usize,
    /// Bodiless GETs are answered without hyper (see `http`).
    pub direct_responses: bool,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// SIGTERM: streams stay open this long after `/readyz` turns 503...
    pub drain_delay: Duration,
    /// ... then are ended in batches spread over this long.
    pub drain_window: Duration,
    /// Sends per user per `send_window`.
    pub sends_per_user: u32,
    pub send_window: Duration,
}

impl Config {
    /// Loads from the process environment and `CONFIG_FILE` (default
    /// `Leptos.toml` in the working directory).
    pub fn from_env() -> Result<Self, ConfigError> {
        let env = |name: &str| std::env::var(name).ok();
        let (file, explicit) = match env("CONFIG_FILE") {
            Some(path) => (PathBuf::from(path), true),
            None => (PathBuf::from(DEFAULT_FILE), false),
        };
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => None,
            Err(e) => {
                return Err(ConfigError::Read {
                    file,
                    reason: e.to_string(),
                });
            }
        };
        Self::load(text.as_deref().map(|t| (file.as_path(), t)), env)
    }

    /// Loads from an optional file (path, contents) and an environment
    /// lookup. Taking the environment as a function keeps tests free of
    /// process-global state.
    pub fn load(
        file: Option<(&Path, &str)>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let layers = Layers::new(file, &env)?;
        let leptos = LeptosOptions::builder()
            .output_name(layers.get::<String>("leptos", "output_name")?)
            .site_root(layers.get::<String>("leptos", "site_root")?)
            .site_pkg_dir(layers.get::<String>("leptos", "site_pkg_dir")?)
            .site_addr(layers.get::<SocketAddr>("leptos", "site_addr")?)
            .env(layers.get::<LeptosEnv>("leptos", "env")?.0)
            .hash_files(layers.get::<bool>("leptos", "hash_files")?)
            .build();
        let database_url = layers.get::<String>("", "database_url")?;
        let positive = |n: &usize| (*n > 0).then_some(()).ok_or("a number above 0");
        let nonzero = |d: &Duration| (!d.is_zero()).then_some(()).ok_or("a duration above 0");
        let sse = SseConfig {
            ping_interval: layers.get_checked("sse", "ping_interval", nonzero)?,
            max_clients: layers.get_checked("sse", "max_clients", positive)?,
            per_user_max: layers.get_checked("sse", "per_user_max", positive)?,
            queue_len: layers.get_checked("sse", "queue_len", positive)?,
            max_payload: layers
                .get_checked::<ByteSize>("sse", "max_payload", |b| positive(&b.0))?
                .0,
            max_client_tags: layers.get("sse", "max_client_tags")?,
            retry: layers.get("sse", "retry")?,
            metrics: layers.get("metrics", "enabled")?,
            per_address_max: layers.get_checked("sse", "per_address_max", positive)?,
            history_len: layers.get("sse", "history_len")?,
            history_age: layers.get("sse", "history_age")?,
            history_max_bytes: layers.get::<ByteSize>("sse", "history_max_bytes")?.0,
            inbox_replay_max: layers.get("sse", "inbox_replay_max")?,
            cors_origins: layers.get::<List>("sse", "cors_origins")?.0,
            presence_interval: layers.get("sse", "presence_interval")?,
            presence_debounce: layers.get("sse", "presence_debounce")?,
        };
        let stream_key = layers.get::<String>("service", "stream_key")?;
        if !stream_key.is_empty()
            && stream_key.len() < crate::sse::service::stream_token::MIN_KEY_BYTES
        {
            // Not the value itself in the message: it is a secret.
            return Err(ConfigError::Invalid {
                key: "service.stream_key".into(),
                origin: layers.raw("service", "stream_key").1,
                value: "(hidden)".into(),
                expected: "at least 32 bytes (or empty: a key kept in the database)".into(),
            });
        }
        let service = ServiceConfig {
            batch_max: layers.get_checked("service", "batch_max", positive)?,
            max_targets: layers.get_checked("service", "max_targets", positive)?,
            idempotency_window: layers.get_checked("service", "idempotency_window", nonzero)?,
            idempotency_max_keys: layers.get_checked(
                "service",
                "idempotency_max_keys",
                positive,
            )?,
            stream_key: (!stream_key.is_empty()).then(|| stream_key.into_bytes()),
            stream_token_ttl: layers.get_checked("service", "stream_token_ttl", nonzero)?,
            stream_token_max_ttl: layers.get_checked("service", "stream_token_max_ttl", nonzero)?,
        };
        let inbox = InboxConfig {
            retention: layers.get_checked("inbox", "retention", nonzero)?,
            max_per_user: layers.get_checked("inbox", "max_per_user", positive)?,
            batch_max: layers.get_checked("inbox", "batch_max", positive)?,
            queue_max: layers.get_checked("inbox", "queue_max", positive)?,
            relay_interval: layers.get_checked("inbox", "relay_interval", nonzero)?,
            sweep_interval: layers.get_checked("inbox", "sweep_interval", nonzero)?,
        };
        let bus = BusConfig {
            url: layers.get::<String>("bus", "url")?,
            partitions: layers
                .get_checked::<u16>("bus", "partitions", |n| {
                    Partitions::new(*n)
                        .map(|_| ())
                        .ok_or("a number from 1 to 256")
                })
                .map(|n| Partitions::new(n).unwrap_or_default())?,
            prefix: layers.get_checked::<String>("bus", "prefix", |p| {
                (!p.is_empty() && !p.contains(['{', '}']))
                    .then_some(())
                    .ok_or("a non-empty name without braces")
            })?,
            timeout: layers.get_checked("bus", "timeout", nonzero)?,
            queue_max: layers.get_checked("bus", "queue_max", positive)?,
            report_interval: layers.get_checked("bus", "report_interval", nonzero)?,
            instance: layers.get::<String>("bus", "instance")?,
            history_len: sse.history_len,
            follow: layers.get::<value::FollowValue>("bus", "follow")?.0,
            unfollow_after: layers.get_checked("bus", "unfollow_after", nonzero)?,
        };
        let positive_u32 = |n: &u32| (*n > 0).then_some(()).ok_or("a number above 0");
        let auth = AuthConfig {
            session_ttl: layers.get_checked("auth", "session_ttl", nonzero)?,
            secure_cookie: layers.get::<SecureCookieValue>("auth", "secure_cookie")?.0,
            login_attempts_per_user: layers.get_checked(
                "auth",
                "login_attempts_per_user",
                positive_u32,
            )?,
            login_attempts_per_ip: layers.get_checked(
                "auth",
                "login_attempts_per_ip",
                positive_u32,
            )?,
            login_window: layers.get_checked("auth", "login_window", nonzero)?,
            stream_session_cache: layers.get_checked("auth", "stream_session_cache", |d| {
                (*d <= crate::auth::stream_sessions::MAX_TTL)
                    .then_some(())
                    .ok_or("a duration of at most 60s")
            })?,
            stream_session_cache_max: layers.get_checked(
                "auth",
                "stream_session_cache_max",
                positive,
            )?,
        };
        Ok(Config {
            data_dir: layers.get::<PathBuf>("", "data_dir")?,
            database_url: (!database_url.is_empty()).then_some(database_url),
            leptos,
            sse,
            inbox,
            service,
            bus,
            auth,
            server: ServerConfig {
                shutdown_timeout: layers.get::<Duration>("server", "shutdown_timeout")?,
                header_timeout: layers.get_checked("server", "header_timeout", nonzero)?,
                body_timeout: layers.get_checked("server", "body_timeout", nonzero)?,
                client_timeout: layers.get_checked("sse", "client_timeout", nonzero)?,
                max_body: layers
                    .get_checked::<ByteSize>("server", "max_body", |b| positive(&b.0))?
                    .0,
                direct_responses: layers.get("server", "direct_responses")?,
                trusted_proxies: layers.get::<IpList>("server", "trusted_proxies")?.0,
                drain_delay: layers.get("server", "drain_delay")?,
                drain_window: layers.get("server", "drain_window")?,
                sends_per_user: layers.get_checked("server", "sends_per_user", positive_u32)?,
                send_window: layers.get_checked("server", "send_window", nonzero)?,
            },
            metrics: MetricsConfig {
                enabled: layers.get("metrics", "enabled")?,
                addr: layers.get::<OptionalAddr>("metrics", "addr")?.0,
                addr_is_default: layers.is_default::<OptionalAddr>("metrics", "addr"),
                token: Some(layers.get::<String>("metrics", "token")?).filter(|t| !t.is_empty()),
            },
            log: layers.get::<LogFormatValue>("log", "format")?.0,
        })
    }
}

#[cfg(test)]
mod tests;
