//! Tests of the configuration loader.

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
    assert!(matches!(&err, ConfigError::UnknownKey { key, .. } if key == "server.shutdown_timout"));
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
    let err = load(None, &[("METRICS_ENABLED", "maybe")]).unwrap_err();
    assert!(err.to_string().contains("expected true or false"));
}

#[test]
fn ops_keys_read_and_the_removed_logging_switch_says_what_to_use() {
    let config = load(
        None,
        &[
            ("METRICS_ADDR", ""),
            ("METRICS_TOKEN", "s3cret"),
            ("LOG_FORMAT", "json"),
            ("SERVER_DRAIN_WINDOW", "4s"),
        ],
    )
    .unwrap();
    assert_eq!(config.metrics.addr, None);
    assert_eq!(config.metrics.token.as_deref(), Some("s3cret"));
    assert_eq!(config.log, crate::config::LogFormat::Json);
    assert_eq!(config.server.drain_window, Duration::from_secs(4));
    let defaults = load(None, &[]).unwrap();
    assert_eq!(
        defaults.metrics.addr,
        Some("127.0.0.1:9464".parse().unwrap())
    );
    assert_eq!(defaults.metrics.token, None);
    assert_eq!(defaults.server.drain_delay, Duration::from_secs(5));
    let err = load(None, &[("LOG_FORMAT", "xml")]).unwrap_err();
    assert!(err.to_string().contains("`text` or `json`"));
    for (file, env) in [
        (Some("[sse]\nenable_logging = true\n"), &[][..]),
        (None, &[("SSE_ENABLE_LOGGING", "false")][..]),
    ] {
        let err = load(file, env).unwrap_err().to_string();
        assert!(
            err.contains("`sse.enable_logging`") && err.contains("RUST_LOG"),
            "{err}"
        );
    }
}

#[test]
fn auth_section_reads_durations_and_the_removed_admins_key_is_refused() {
    let config = load(None, &[("AUTH_SESSION_TTL", "2d")]).unwrap();
    assert_eq!(config.auth.session_ttl, Duration::from_secs(2 * 86_400));
    let err = load(None, &[("AUTH_SECURE_COOKIE", "sometimes")]).unwrap_err();
    assert!(err.to_string().contains("expected auto, always or never"));
    // Roles by name at sign-up let anyone take an admin name first.
    let err = load(Some("[auth]\nadmins = [\"alice\"]\n"), &[]).unwrap_err();
    assert!(
        err.to_string().contains("`auth.admins`") && err.to_string().contains("admin grant"),
        "{err}"
    );
    let err = load(None, &[("AUTH_ADMINS", "alice")]).unwrap_err();
    assert!(
        err.to_string().contains("environment variable AUTH_ADMINS"),
        "{err}"
    );
}

#[test]
fn server_section_hardening_keys() {
    let config = load(None, &[]).unwrap();
    assert!(config.server.direct_responses);
    assert_eq!(config.server.body_timeout, Duration::from_secs(30));
    assert_eq!(config.server.max_body, 1024 * 1024);
    assert!(config.server.trusted_proxies.is_empty());
    assert_eq!(config.sse.per_address_max, 64);
    let config = load(
        None,
        &[
            ("SERVER_DIRECT_RESPONSES", "false"),
            ("SERVER_TRUSTED_PROXIES", "127.0.0.1, ::1"),
        ],
    )
    .unwrap();
    assert!(!config.server.direct_responses);
    assert_eq!(config.server.trusted_proxies.len(), 2);
    let err = load(None, &[("SERVER_TRUSTED_PROXIES", "10.0.0.300")]).unwrap_err();
    assert!(err.to_string().contains("server.trusted_proxies"), "{err}");
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
    let readme = include_str!("../../README.md");
    assert!(
        readme.contains(&markdown_table()),
        "README.md's configuration table is out of date; paste config::markdown_table():\n{}",
        markdown_table()
    );
}

#[test]
fn checked_in_leptos_toml_is_valid() {
    let text = include_str!("../../Leptos.toml");
    let config = load(Some(text), &[]).expect("Leptos.toml in the repository must load");
    // The auth layer skips the session for static files under this path.
    assert_eq!(
        format!("/{}/", config.leptos.site_pkg_dir),
        crate::auth::middleware::STATIC_PREFIX
    );
}

/// A busy metrics address stops the server only
/// when it was asked for; the default (left out, or restated as the
/// shipped file does) gives way to another process on the same host.
#[test]
fn the_metrics_address_knows_whether_it_was_asked_for() {
    let default =
        |file: Option<&str>, env: &[(&str, &str)]| load(file, env).unwrap().metrics.addr_is_default;
    assert!(default(None, &[]));
    assert!(default(Some(include_str!("../../Leptos.toml")), &[]));
    assert!(default(Some("[metrics]\naddr = \"127.0.0.1:9464\"\n"), &[]));
    assert!(!default(
        Some("[metrics]\naddr = \"127.0.0.1:9465\"\n"),
        &[]
    ));
    assert!(!default(None, &[("METRICS_ADDR", "127.0.0.1:9464")]));
    assert!(!default(None, &[("METRICS_ADDR", "127.0.0.1:9465")]));
}
