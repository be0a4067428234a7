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

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use leptos::config::LeptosOptions;

use crate::auth::{AuthConfig, SecureCookie};
use crate::sse::SseConfig;

/// The file read when `CONFIG_FILE` is not set. Missing means defaults.
pub const DEFAULT_FILE: &str = "Leptos.toml";

/// One configuration key: where it lives, its default and what it does.
///
/// This table is the single source for validation, `--help`-style listings
/// and the README table, so it cannot drift from the code that reads it.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    /// `None` for top-level keys.
    pub section: Option<&'static str>,
    pub name: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
}

impl KeySpec {
    /// The environment variable that overrides this key.
    pub fn env_var(&self) -> String {
        match self.section {
            Some(section) => format!("{section}_{}", self.name).to_uppercase(),
            None => self.name.to_uppercase(),
        }
    }

    /// The dotted path used in messages, e.g. `leptos.site_addr`.
    pub fn path(&self) -> String {
        match self.section {
            Some(section) => format!("{section}.{}", self.name),
            None => self.name.to_string(),
        }
    }
}

const fn key(
    section: Option<&'static str>,
    name: &'static str,
    default: &'static str,
    doc: &'static str,
) -> KeySpec {
    KeySpec {
        section,
        name,
        default,
        doc,
    }
}

/// Every key the app reads. Later features add their sections here.
pub const KEYS: &[KeySpec] = &[
    key(
        None,
        "data_dir",
        "./data",
        "Directory for the app's files (the SQLite database lives here).",
    ),
    key(
        None,
        "database_url",
        "",
        "Database to use instead of the SQLite file in `data_dir` (`sqlite://…` or `postgres://…`).",
    ),
    key(
        Some("leptos"),
        "site_addr",
        "127.0.0.1:3000",
        "Address and port the HTTP server listens on.",
    ),
    key(
        Some("leptos"),
        "site_root",
        "target/site",
        "Directory holding the built site (the WASM bundle, CSS, public files).",
    ),
    key(
        Some("leptos"),
        "site_pkg_dir",
        "pkg",
        "Sub-directory of `site_root` with the WASM/JS/CSS bundle.",
    ),
    key(
        Some("leptos"),
        "output_name",
        "sse_notify",
        "Base name of the bundle files; must match the build.",
    ),
    key(
        Some("leptos"),
        "env",
        "PROD",
        "`PROD` or `DEV` (DEV enables cargo-leptos live reload).",
    ),
    key(
        Some("sse"),
        "ping_interval",
        "45s",
        "How often a `: ping` comment is written to every stream.",
    ),
    key(
        Some("sse"),
        "client_timeout",
        "90s",
        "A connection whose socket accepts no bytes for this long is closed.",
    ),
    key(
        Some("sse"),
        "max_clients",
        "1000",
        "Open streams in this process; beyond it `GET /api/sse` answers 503.",
    ),
    key(
        Some("sse"),
        "per_user_max",
        "16",
        "Open streams per user; beyond it `GET /api/sse` answers 429.",
    ),
    key(
        Some("sse"),
        "queue_len",
        "256",
        "Events waiting for one client; a client this far behind is disconnected.",
    ),
    key(
        Some("sse"),
        "max_payload",
        "64KiB",
        "Largest event payload (serialised JSON); larger sends are refused.",
    ),
    key(
        Some("sse"),
        "max_client_tags",
        "8",
        "Tags a client may add with `?tag=key:value`.",
    ),
    key(
        Some("sse"),
        "retry",
        "3s",
        "The `retry:` sent to browsers: their reconnect delay.",
    ),
    key(
        Some("sse"),
        "enable_logging",
        "true",
        "Log every connect and disconnect at `info` (else `debug`).",
    ),
    key(
        Some("auth"),
        "admins",
        "",
        "Usernames with the admin role, comma-separated in the environment (`AUTH_ADMINS=alice,bob`).",
    ),
    key(
        Some("auth"),
        "session_ttl",
        "7d",
        "A sign-in session unused for this long expires.",
    ),
    key(
        Some("auth"),
        "secure_cookie",
        "auto",
        "`Secure` on the session cookie: `auto` (when `X-Forwarded-Proto: https`), `always` or `never`.",
    ),
    key(
        Some("auth"),
        "login_attempts_per_user",
        "10",
        "Sign-in attempts per username per `login_window`; more get 429.",
    ),
    key(
        Some("auth"),
        "login_attempts_per_ip",
        "50",
        "Sign-in and sign-up attempts per client address per `login_window`; more get 429.",
    ),
    key(
        Some("auth"),
        "login_window",
        "5m",
        "The window of the sign-in rate limits.",
    ),
    key(
        Some("server"),
        "shutdown_timeout",
        "10s",
        "On SIGINT/SIGTERM, how long open requests get to finish before the process exits.",
    ),
];

/// What went wrong while loading the configuration. Each message names the
/// key and where its value came from, so a user can fix it without reading
/// code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The file exists (or was named explicitly) but could not be read.
    Read { file: PathBuf, reason: String },
    /// The file is not valid TOML.
    Syntax { file: PathBuf, reason: String },
    /// The file has a key (or section) the app does not know.
    UnknownKey { file: PathBuf, key: String },
    /// A value could not be parsed.
    Invalid {
        key: String,
        origin: Origin,
        value: String,
        expected: String,
    },
}

/// Where a value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Env(String),
    File(PathBuf),
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::File(file) => write!(f, "{}", file.display()),
            Origin::Default => write!(f, "built-in default"),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { file, reason } => {
                write!(f, "cannot read config file {}: {reason}", file.display())
            }
            ConfigError::Syntax { file, reason } => {
                write!(
                    f,
                    "config file {} is not valid TOML: {reason}",
                    file.display()
                )
            }
            ConfigError::UnknownKey { file, key } => {
                let known: Vec<String> = KEYS.iter().map(KeySpec::path).collect();
                write!(
                    f,
                    "unknown key `{key}` in {}; known keys: {}",
                    file.display(),
                    known.join(", ")
                )
            }
            ConfigError::Invalid {
                key,
                origin,
                value,
                expected,
            } => write!(
                f,
                "invalid value {value:?} for `{key}` (from {origin}): expected {expected}"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The whole runtime configuration, parsed and checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// `None` means the embedded SQLite file under `data_dir`.
    pub database_url: Option<String>,
    pub leptos: LeptosOptions,
    pub sse: SseConfig,
    pub auth: AuthConfig,
    pub server: ServerConfig,
}

/// `[server]`: process-level behaviour.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub shutdown_timeout: Duration,
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
            .build();
        let database_url = layers.get::<String>("", "database_url")?;
        let positive = |n: &usize| (*n > 0).then_some(()).ok_or("a number above 0");
        let nonzero = |d: &Duration| (!d.is_zero()).then_some(()).ok_or("a duration above 0");
        let sse = SseConfig {
            ping_interval: layers.get_checked("sse", "ping_interval", nonzero)?,
            client_timeout: layers.get_checked("sse", "client_timeout", nonzero)?,
            max_clients: layers.get_checked("sse", "max_clients", positive)?,
            per_user_max: layers.get_checked("sse", "per_user_max", positive)?,
            queue_len: layers.get_checked("sse", "queue_len", positive)?,
            max_payload: layers
                .get_checked::<ByteSize>("sse", "max_payload", |b| positive(&b.0))?
                .0,
            max_client_tags: layers.get("sse", "max_client_tags")?,
            retry: layers.get("sse", "retry")?,
            enable_logging: layers.get("sse", "enable_logging")?,
        };
        let positive_u32 = |n: &u32| (*n > 0).then_some(()).ok_or("a number above 0");
        let auth = AuthConfig {
            admins: layers.get::<List>("auth", "admins")?.0,
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
        };
        Ok(Config {
            data_dir: layers.get::<PathBuf>("", "data_dir")?,
            database_url: (!database_url.is_empty()).then_some(database_url),
            leptos,
            sse,
            auth,
            server: ServerConfig {
                shutdown_timeout: layers.get::<Duration>("server", "shutdown_timeout")?,
            },
        })
    }
}

/// The file and the environment, with the lookup rules in one place.
struct Layers<'a> {
    file: Option<(&'a Path, BTreeMap<String, String>)>,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Layers<'a> {
    fn new(
        file: Option<(&'a Path, &str)>,
        env: &'a dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let file = match file {
            Some((path, text)) => Some((path, flatten(path, text)?)),
            None => None,
        };
        Ok(Layers { file, env })
    }

    /// Like [`Layers::get`], plus a check of the parsed value; `check`
    /// returns the "expected …" text on failure.
    fn get_checked<T: ConfigValue>(
        &self,
        section: &str,
        name: &str,
        check: impl Fn(&T) -> Result<(), &'static str>,
    ) -> Result<T, ConfigError> {
        let value: T = self.get(section, name)?;
        match check(&value) {
            Ok(()) => Ok(value),
            Err(expected) => {
                let (raw, origin) = self.raw(section, name);
                Err(ConfigError::Invalid {
                    key: spec_of(section, name).path(),
                    origin,
                    value: raw,
                    expected: expected.to_string(),
                })
            }
        }
    }

    /// The value of `section.name` (section `""` for top level), parsed.
    fn get<T: ConfigValue>(&self, section: &str, name: &str) -> Result<T, ConfigError> {
        let (raw, origin) = self.raw(section, name);
        T::parse(raw.trim()).map_err(|expected| ConfigError::Invalid {
            key: spec_of(section, name).path(),
            origin,
            value: raw,
            expected,
        })
    }

    /// The text of a value and the layer it came from.
    fn raw(&self, section: &str, name: &str) -> (String, Origin) {
        let spec = spec_of(section, name);
        let env_var = spec.env_var();
        if let Some(value) = (self.env)(&env_var) {
            (value, Origin::Env(env_var))
        } else if let Some((value, path)) = self
            .file
            .as_ref()
            .and_then(|(path, map)| map.get(&spec.path()).map(|v| (v.clone(), path)))
        {
            (value, Origin::File(path.to_path_buf()))
        } else {
            (spec.default.to_string(), Origin::Default)
        }
    }
}

/// The spec of a key the code reads. A key missing from [`KEYS`] is a bug
/// in this file, caught by the tests that load the defaults.
fn spec_of(section: &str, name: &str) -> KeySpec {
    KEYS.iter()
        .find(|k| k.section.unwrap_or("") == section && k.name == name)
        .copied()
        .unwrap_or_else(|| panic!("config key {section}.{name} missing from KEYS"))
}

/// Turns the TOML document into `section.key → text`, refusing unknown
/// keys. Arrays become comma-separated lists so that the file and the
/// environment share one parser.
fn flatten(path: &Path, text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            file: path.to_path_buf(),
            reason: e.message().to_string(),
        })?;
    let mut out = BTreeMap::new();
    let unknown = |key: String| ConfigError::UnknownKey {
        file: path.to_path_buf(),
        key,
    };
    for (name, value) in table {
        if let toml::Value::Table(section) = value {
            if !KEYS.iter().any(|k| k.section == Some(name.as_str())) {
                return Err(unknown(format!("[{name}]")));
            }
            for (key, value) in section {
                let dotted = format!("{name}.{key}");
                if !KEYS.iter().any(|k| k.path() == dotted) {
                    return Err(unknown(dotted));
                }
                out.insert(dotted, scalar_text(&value));
            }
        } else {
            if !KEYS.iter().any(|k| k.section.is_none() && k.name == name) {
                return Err(unknown(name));
            }
            out.insert(name, scalar_text(&value));
        }
    }
    Ok(out)
}

fn scalar_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(items) => items.iter().map(scalar_text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// A type that can be read from a configuration value. The error is the
/// "expected …" half of the message shown to the user.
pub trait ConfigValue: Sized {
    fn parse(raw: &str) -> Result<Self, String>;
}

impl ConfigValue for String {
    fn parse(raw: &str) -> Result<Self, String> {
        Ok(raw.to_string())
    }
}

impl ConfigValue for PathBuf {
    fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("a non-empty path".into());
        }
        Ok(PathBuf::from(raw))
    }
}

impl ConfigValue for SocketAddr {
    fn parse(raw: &str) -> Result<Self, String> {
        raw.parse()
            .map_err(|_| "an address and port such as 127.0.0.1:3000".into())
    }
}

impl ConfigValue for bool {
    fn parse(raw: &str) -> Result<Self, String> {
        match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err("true or false".into()),
        }
    }
}

macro_rules! unsigned_value {
    ($($t:ty),*) => {$(
        impl ConfigValue for $t {
            fn parse(raw: &str) -> Result<Self, String> {
                raw.replace('_', "").parse().map_err(|_| {
                    format!("a whole number from 0 to {}", <$t>::MAX)
                })
            }
        }
    )*};
}
unsigned_value!(u16, u32, u64, usize);

/// Durations are written with a unit: `500ms`, `45s`, `2m`, `1h`. A bare
/// number means seconds.
impl ConfigValue for Duration {
    fn parse(raw: &str) -> Result<Self, String> {
        let expected = || "a duration such as 45s, 500ms, 2m, 1h or 7d".to_string();
        let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
        let (number, unit) = raw.split_at(split);
        let number: u64 = number.parse().map_err(|_| expected())?;
        let millis = match unit.trim() {
            "ms" => Some(number),
            "" | "s" => number.checked_mul(1_000),
            "m" | "min" => number.checked_mul(60_000),
            "h" => number.checked_mul(3_600_000),
            "d" => number.checked_mul(86_400_000),
            _ => None,
        };
        millis.map(Duration::from_millis).ok_or_else(expected)
    }
}

/// A size in bytes: `65536`, `64KiB`, `1MiB` (also `KB`/`MB`, read as
/// powers of 1024).
struct ByteSize(usize);

impl ConfigValue for ByteSize {
    fn parse(raw: &str) -> Result<Self, String> {
        let expected = || "a size such as 65536, 64KiB or 1MiB".to_string();
        let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
        let (number, unit) = raw.split_at(split);
        let number: usize = number.parse().map_err(|_| expected())?;
        let factor = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1024,
            "m" | "mb" | "mib" => 1024 * 1024,
            _ => return Err(expected()),
        };
        number
            .checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(expected)
    }
}

/// A comma-separated list; empty items are dropped.
struct List(Vec<String>);

impl ConfigValue for List {
    fn parse(raw: &str) -> Result<Self, String> {
        Ok(List(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        ))
    }
}

struct SecureCookieValue(SecureCookie);

impl ConfigValue for SecureCookieValue {
    fn parse(raw: &str) -> Result<Self, String> {
        match raw.to_ascii_lowercase().as_str() {
            "auto" => Ok(SecureCookieValue(SecureCookie::Auto)),
            "always" | "true" => Ok(SecureCookieValue(SecureCookie::Always)),
            "never" | "false" => Ok(SecureCookieValue(SecureCookie::Never)),
            _ => Err("auto, always or never".into()),
        }
    }
}

/// Leptos' own environment switch, spelled as in cargo-leptos.
struct LeptosEnv(leptos::config::Env);

impl ConfigValue for LeptosEnv {
    fn parse(raw: &str) -> Result<Self, String> {
        match raw.to_ascii_lowercase().as_str() {
            "prod" | "production" => Ok(LeptosEnv(leptos::config::Env::PROD)),
            "dev" | "development" => Ok(LeptosEnv(leptos::config::Env::DEV)),
            _ => Err("PROD or DEV".into()),
        }
    }
}

/// The README's configuration table, generated from [`KEYS`].
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| `Leptos.toml` key | environment variable | default | meaning |\n|---|---|---|---|\n",
    );
    for spec in KEYS {
        let default = if spec.default.is_empty() {
            "(none)".to_string()
        } else {
            format!("`{}`", spec.default)
        };
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} |\n",
            spec.path(),
            spec.env_var(),
            default,
            spec.doc
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const FILE: &str = r#"
data_dir = "/var/lib/notify"

[leptos]
site_addr = "0.0.0.0:8080"

[server]
shutdown_timeout = "30s"
"#;

    fn load(file: Option<&str>, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load(file.map(|t| (Path::new("Leptos.toml"), t)), env_of(env))
    }

    #[test]
    fn defaults_apply_without_file_or_env() {
        let config = load(None, &[]).expect("defaults are valid");
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(config.database_url, None);
        assert_eq!(
            config.leptos.site_addr,
            "127.0.0.1:3000".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(&*config.leptos.output_name, "sse_notify");
        assert_eq!(config.server.shutdown_timeout, Duration::from_secs(10));
    }

    #[test]
    fn file_overrides_defaults_and_env_overrides_file() {
        let config = load(Some(FILE), &[]).expect("valid file");
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/notify"));
        assert_eq!(
            config.leptos.site_addr,
            "0.0.0.0:8080".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(config.server.shutdown_timeout, Duration::from_secs(30));

        let config = load(
            Some(FILE),
            &[
                ("DATA_DIR", "/tmp/x"),
                ("LEPTOS_SITE_ADDR", "127.0.0.1:0"),
                ("SERVER_SHUTDOWN_TIMEOUT", "250ms"),
                ("DATABASE_URL", "postgres://localhost/test"),
            ],
        )
        .expect("valid env");
        assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(config.leptos.site_addr.port(), 0);
        assert_eq!(config.server.shutdown_timeout, Duration::from_millis(250));
        assert_eq!(
            config.database_url.as_deref(),
            Some("postgres://localhost/test")
        );
    }

    #[test]
    fn bad_env_value_names_key_variable_and_expectation() {
        let err = load(Some(FILE), &[("SERVER_SHUTDOWN_TIMEOUT", "soon")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value \"soon\" for `server.shutdown_timeout` (from environment variable \
             SERVER_SHUTDOWN_TIMEOUT): expected a duration such as 45s, 500ms, 2m, 1h or 7d"
        );
    }

    #[test]
    fn bad_file_value_names_the_file() {
        let err = load(Some("[leptos]\nsite_addr = \"localhost\"\n"), &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value \"localhost\" for `leptos.site_addr` (from Leptos.toml): \
             expected an address and port such as 127.0.0.1:3000"
        );
    }

    #[test]
    fn unknown_keys_and_sections_are_refused() {
        let err = load(Some("[server]\nshutdown_timout = \"1s\"\n"), &[]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::UnknownKey { key, .. } if key == "server.shutdown_timout")
        );
        let err = load(Some("[nope]\nx = 1\n"), &[]).unwrap_err();
        assert!(matches!(&err, ConfigError::UnknownKey { key, .. } if key == "[nope]"));
        let err = load(Some("datadir = \"x\"\n"), &[]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("unknown key `datadir` in Leptos.toml")
        );
    }

    #[test]
    fn toml_syntax_errors_are_reported() {
        let err = load(Some("[leptos\n"), &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    }

    #[test]
    fn sse_section_has_the_documented_defaults_and_checks() {
        let config = load(None, &[]).unwrap();
        assert_eq!(config.sse, SseConfig::default());
        let config = load(
            Some("[sse]\nmax_payload = \"1MiB\"\nping_interval = \"100ms\"\n"),
            &[("SSE_MAX_CLIENTS", "50000")],
        )
        .unwrap();
        assert_eq!(config.sse.max_payload, 1024 * 1024);
        assert_eq!(config.sse.ping_interval, Duration::from_millis(100));
        assert_eq!(config.sse.max_clients, 50_000);
        let err = load(None, &[("SSE_QUEUE_LEN", "0")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value \"0\" for `sse.queue_len` (from environment variable SSE_QUEUE_LEN): \
             expected a number above 0"
        );
        let err = load(None, &[("SSE_MAX_PAYLOAD", "lots")]).unwrap_err();
        assert!(
            err.to_string()
                .contains("expected a size such as 65536, 64KiB or 1MiB")
        );
        let err = load(None, &[("SSE_ENABLE_LOGGING", "maybe")]).unwrap_err();
        assert!(err.to_string().contains("expected true or false"));
    }

    #[test]
    fn auth_section_reads_lists_from_file_and_env() {
        let config = load(Some("[auth]\nadmins = [\"alice\", \"Bob\"]\n"), &[]).unwrap();
        assert_eq!(config.auth.admins, vec!["alice", "Bob"]);
        let config = load(
            Some("[auth]\nadmins = [\"alice\"]\n"),
            &[("AUTH_ADMINS", "carol, dave,"), ("AUTH_SESSION_TTL", "2d")],
        )
        .unwrap();
        assert_eq!(config.auth.admins, vec!["carol", "dave"]);
        assert_eq!(config.auth.session_ttl, Duration::from_secs(2 * 86_400));
        assert_eq!(load(None, &[]).unwrap().auth.admins, Vec::<String>::new());
        let err = load(None, &[("AUTH_SECURE_COOKIE", "sometimes")]).unwrap_err();
        assert!(err.to_string().contains("expected auto, always or never"));
    }

    #[test]
    fn durations_parse_with_units() {
        let ok = |s: &str| <Duration as ConfigValue>::parse(s).unwrap();
        assert_eq!(ok("45"), Duration::from_secs(45));
        assert_eq!(ok("45s"), Duration::from_secs(45));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("2m"), Duration::from_secs(120));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        for bad in [
            "",
            "s",
            "1.5s",
            "-1s",
            "10 parsecs",
            "99999999999999999999h",
        ] {
            assert!(<Duration as ConfigValue>::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_key_default_is_valid_and_env_names_follow_the_rule() {
        load(None, &[]).expect("defaults parse");
        for spec in KEYS {
            let expected = match spec.section {
                Some(s) => format!("{}_{}", s.to_uppercase(), spec.name.to_uppercase()),
                None => spec.name.to_uppercase(),
            };
            assert_eq!(spec.env_var(), expected);
        }
        assert!(markdown_table().contains("| `leptos.site_addr` | `LEPTOS_SITE_ADDR` |"));
    }

    #[test]
    fn readme_table_matches_the_keys() {
        let readme = include_str!("../README.md");
        assert!(
            readme.contains(&markdown_table()),
            "README.md's configuration table is out of date; paste config::markdown_table():\n{}",
            markdown_table()
        );
    }

    #[test]
    fn checked_in_leptos_toml_is_valid() {
        let text = include_str!("../Leptos.toml");
        load(Some(text), &[]).expect("Leptos.toml in the repository must load");
    }
}
