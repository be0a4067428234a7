//! The table of every configuration key: section, name, default, meaning.

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
        "hash_files",
        "true",
        "Serve the bundle under the content-hashed names the release build lists in `hash.txt` beside the binary (cached for a year); plain names when that file is absent or with `false`.",
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
        "per_address_max",
        "64",
        "Open streams per client address (see `server.trusted_proxies`); beyond it `GET /api/sse` answers 429.",
    ),
    key(
        Some("sse"),
        "history_len",
        "10000",
        "Published events kept for `Last-Event-ID` replay; an id older than the history gets `sse-reset`. 0 keeps none.",
    ),
    key(
        Some("sse"),
        "history_age",
        "10m",
        "How long a published event stays replayable.",
    ),
    key(
        Some("sse"),
        "history_max_bytes",
        "64MiB",
        "The replay history's framed events, at most (oldest dropped first).",
    ),
    key(
        Some("sse"),
        "inbox_replay_max",
        "100",
        "Unread inbox notifications (the newest) sent first on a stream opened without `Last-Event-ID`, and stored notifications (the newest) resumed from the inbox after a restart; 0 sends none.",
    ),
    key(
        Some("sse"),
        "cors_origins",
        "",
        "Origins (`https://app.example.com`) whose pages may open `/api/sse` from another site, with a stream token (comma-separated in the environment). Empty: none.",
    ),
    key(
        Some("sse"),
        "presence_interval",
        "1s",
        "How often presence is shared between processes and `sse-presence` joins and leaves are announced; 0 turns both off (queries then see this process only).",
    ),
    key(
        Some("sse"),
        "presence_debounce",
        "2s",
        "A member missing for less than this (a reload, a flapping network) is not announced as leaving, nor as joining again.",
    ),
    key(
        Some("service"),
        "batch_max",
        "1000",
        "Events in one `POST /api/publish` batch, at most (the body is also bounded by `server.max_body`).",
    ),
    key(
        Some("service"),
        "max_targets",
        "1000",
        "Users or client ids one publication may name, at most.",
    ),
    key(
        Some("service"),
        "idempotency_window",
        "24h",
        "How long a publish's idempotency key is remembered (in Redis with the bus, else in this process).",
    ),
    key(
        Some("service"),
        "idempotency_max_keys",
        "100000",
        "Idempotency keys one process remembers at once without the bus; beyond it a keyed publish gets 503.",
    ),
    key(
        Some("service"),
        "stream_key",
        "",
        "The key stream tokens are signed with (HS256, at least 32 bytes), to mint them outside this server. Empty: a random key kept in the database.",
    ),
    key(
        Some("service"),
        "stream_token_ttl",
        "5m",
        "A minted stream token's lifetime when the request names none.",
    ),
    key(
        Some("service"),
        "stream_token_max_ttl",
        "1h",
        "The longest lifetime a stream token may be minted with.",
    ),
    key(
        Some("inbox"),
        "retention",
        "30d",
        "Stored notifications older than this are deleted.",
    ),
    key(
        Some("inbox"),
        "max_per_user",
        "1000",
        "Stored notifications kept per user (and broadcasts kept in all). Beyond it, rows go from the senders holding the most of that user's rows (backend sends count as one sender), each sender's oldest read first, then its oldest unread: one account's flood evicts its own rows, and a sender holding no more than an even share of the cap (cap ÷ senders) loses none. Many accounts each sending a little can still push out a small sender's rows (see docs/sse.md). A send never fails for it.",
    ),
    key(
        Some("inbox"),
        "batch_max",
        "1000",
        "Persistent sends written in one group commit, at most.",
    ),
    key(
        Some("inbox"),
        "queue_max",
        "16384",
        "Persistent sends waiting for the writer, at most; a send beyond it waits for room.",
    ),
    key(
        Some("inbox"),
        "relay_interval",
        "1s",
        "How often committed but unpublished notifications (transactional sends, a crash) are looked for and published.",
    ),
    key(
        Some("inbox"),
        "sweep_interval",
        "1m",
        "How often retention and the per-user cap are applied in bulk (inserts apply the cap too).",
    ),
    key(
        Some("bus"),
        "url",
        "",
        "Redis to share events between server processes (`redis://host:6379`); empty: this process only, nothing to start. Several, comma-separated: shards the partitions are spread over, in any order (the one whose address sorts first also keeps figures, presence and limits).",
    ),
    key(
        Some("bus"),
        "partitions",
        "1",
        "Streams the bus spreads events over (1 to 256, the same on every process): a user's events live in one, wide events in each. Above 1 needs `follow = own`; changing it resets every stream once (docs/scaling.md).",
    ),
    key(
        Some("bus"),
        "prefix",
        "sse",
        "Prefix of the bus's Redis keys (`{sse}:stream` …), so several apps can share one Redis.",
    ),
    key(
        Some("bus"),
        "timeout",
        "2s",
        "Bound on every Redis command; a slower Redis counts as unreachable (sends then reach this process's clients only).",
    ),
    key(
        Some("bus"),
        "follow",
        "own",
        "What each process reads of the shared stream: `own`, only events for users it holds a stream of (a Redis channel per user) and those addressed wider; `all`, every event, writing entries that earlier versions can read too (the first step of an upgrade, docs/deploy.md).",
    ),
    key(
        Some("bus"),
        "unfollow_after",
        "30s",
        "With `follow = own`: how long a process keeps following a user after the user's last stream there ended.",
    ),
    key(
        Some("bus"),
        "queue_max",
        "10000",
        "Sends waiting for the bus, at most; one more is refused (503 `bus_busy`).",
    ),
    key(
        Some("bus"),
        "report_interval",
        "1s",
        "How often each process writes its figures to Redis; a process that stops reporting leaves the totals within three intervals.",
    ),
    key(
        Some("bus"),
        "instance",
        "",
        "This process's name in the cluster's figures; empty: a random one.",
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
        "Sign-in attempts for one username from one client address per `login_window`; more get 429. Failed sign-ins for a username from all addresses together only slow its sign-ins down (1 s each, beyond twice this many); they never refuse it.",
    ),
    key(
        Some("auth"),
        "login_attempts_per_ip",
        "50",
        "Sign-in and sign-up attempts per client address (IPv6: per /64) per `login_window`; more get 429.",
    ),
    key(
        Some("auth"),
        "login_window",
        "5m",
        "The window of the sign-in rate limits.",
    ),
    key(
        Some("auth"),
        "stream_session_cache",
        "10s",
        "How long a stream connect (`GET /api/sse`) remembers who its session is, sparing the reconnects and tabs of one sign-in a database read; `0s` reads it on every connect. At most 60s. A sign-out anywhere and a role change still end access at once (the streams end, and new ones of that session are refused); pages and server functions always read the database.",
    ),
    key(
        Some("auth"),
        "stream_session_cache_max",
        "100000",
        "Sessions remembered so, at most; past it the oldest is forgotten.",
    ),
    key(
        Some("server"),
        "shutdown_timeout",
        "10s",
        "On SIGINT/SIGTERM, how long open requests get to finish before the process exits.",
    ),
    key(
        Some("server"),
        "drain_delay",
        "5s",
        "On SIGTERM: `/readyz` answers 503 at once, and event streams are left open this long (for the load balancer to notice).",
    ),
    key(
        Some("server"),
        "drain_window",
        "10s",
        "On SIGTERM, after `drain_delay`: event streams are ended in batches spread over this long, each told to reconnect after a jittered `retry:`; then the process exits. (SIGINT stops at once.)",
    ),
    key(
        Some("server"),
        "header_timeout",
        "30s",
        "A connection that has not sent a complete request head for this long is closed (this includes idle keep-alive connections).",
    ),
    key(
        Some("server"),
        "body_timeout",
        "30s",
        "A request body must arrive completely within this long; a slower one is answered 408 and the connection closed.",
    ),
    key(
        Some("server"),
        "max_body",
        "1MiB",
        "Largest request body (server functions, forms); a larger one is answered 413.",
    ),
    key(
        Some("server"),
        "direct_responses",
        "true",
        "Answer bodiless GETs (pages, files, event streams) without hyper's per-connection buffers; `false` serves every connection with hyper, exactly as `axum::serve` would.",
    ),
    key(
        Some("server"),
        "trusted_proxies",
        "",
        "Addresses of reverse proxies whose `X-Forwarded-For` names the client (comma-separated in the environment); from anyone else the header is ignored.",
    ),
    key(
        Some("server"),
        "sends_per_user",
        "300",
        "Sends (`/api/sse/test`, `/api/sse/broadcast`) one user may make per `send_window`; more get 429 with `Retry-After`. With `bus.url`, counted across every process in Redis (windows on each process's clock; while Redis does not answer, per process).",
    ),
    key(
        Some("server"),
        "send_window",
        "1m",
        "The window of `sends_per_user`.",
    ),
    key(
        Some("metrics"),
        "enabled",
        "true",
        "Keep the figures only `/metrics` needs (send latency, sends by target, bus lag, database latency); `false` also serves no `/metrics`.",
    ),
    key(
        Some("metrics"),
        "addr",
        "127.0.0.1:9464",
        "A separate address serving `GET /metrics` (Prometheus text format) without a token; empty: none. Left at this default and already taken (another process on this host), it is skipped with a warning; an address you set must be free.",
    ),
    key(
        Some("metrics"),
        "token",
        "",
        "With a token, `GET /metrics` is also served on the main address to `Authorization: Bearer <token>`; empty: not on the main address.",
    ),
    key(
        Some("log"),
        "format",
        "text",
        "Log lines as `text` or `json` (one object per line). What is logged is chosen with `RUST_LOG` (default `info`).",
    ),
];

/// Keys that existed once, and what replaces them. Setting one is an
/// error that says what to do instead, never a silent no-op.
pub const REMOVED: &[(&str, &str, &str)] = &[
    (
        "auth",
        "admins",
        "the admin role is granted to an existing account by the operator: \
         `sse_notify admin grant <username>` (and `admin revoke`, `admin list`)",
    ),
    (
        "sse",
        "enable_logging",
        "what is logged is chosen with `RUST_LOG`: connects and disconnects are \
         logged at `info` under the target `axum_sse_notify::stream`; \
         `RUST_LOG=info,axum_sse_notify::stream=warn` leaves them out",
    ),
];

/// The spec of a key the code reads. A key missing from [`KEYS`] is a bug
/// in this file, caught by the tests that load the defaults.
pub(super) fn spec_of(section: &str, name: &str) -> KeySpec {
    KEYS.iter()
        .find(|k| k.section.unwrap_or("") == section && k.name == name)
        .copied()
        .unwrap_or_else(|| panic!("config key {section}.{name} missing from KEYS"))
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
