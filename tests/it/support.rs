//! Shared by the integration tests: the real server on an ephemeral port,
//! and a small SSE client that parses the stream as browsers do.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use sse_notify::config::Config;
use sse_notify::server;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Where a test server keeps its accounts and sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A fresh SQLite file in a temporary directory.
    Sqlite,
    /// A fresh database on the Postgres server at `TEST_POSTGRES_URL`
    /// (default `postgres://postgres@127.0.0.1:5432/postgres`).
    Postgres,
}

/// Whether this run serves bodiless GETs directly (the default) or every
/// connection with hyper (`SERVER_DIRECT_RESPONSES=false`, the second run
/// of `make test`).
pub fn direct_responses() -> bool {
    std::env::var("SERVER_DIRECT_RESPONSES").map_or(true, |v| v != "false")
}

/// A password every test account uses.
pub const PASSWORD: &str = "correct horse battery";

/// A running server and the means to stop it.
pub struct TestServer {
    pub base: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), server::ServeError>>,
    data_dir: std::path::PathBuf,
    postgres_db: Option<String>,
    /// What the server was configured with (for the admin command).
    env: HashMap<String, String>,
}

/// Creates an empty database on the test Postgres server; returns its
/// name and URL.
pub async fn create_postgres_db() -> (String, String) {
    use sqlx::Connection;
    let admin = postgres_admin_url();
    let name = format!("sse_notify_test_{}", uuid::Uuid::new_v4().simple());
    let create = async {
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("Postgres at {admin} (set TEST_POSTGRES_URL): {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("CREATE DATABASE");
        let _ = conn.close().await;
    };
    tokio::time::timeout(Duration::from_secs(30), create)
        .await
        .expect("CREATE DATABASE within 30 s");
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
    let url = format!("{base}/{name}");
    (name, url)
}

/// Drops a database [`create_postgres_db`] made; best effort, bounded.
pub async fn drop_postgres_db(name: &str) {
    use sqlx::Connection;
    let drop = async {
        if let Ok(mut conn) = sqlx::PgConnection::connect(&postgres_admin_url()).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), drop)
        .await
        .is_err()
    {
        eprintln!("warning: could not drop test database {name} within 10 s");
    }
}

fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

impl TestServer {
    /// On SQLite, with the checked-in `Leptos.toml` and `overrides` as
    /// environment.
    pub async fn start(overrides: &[(&str, &str)]) -> Self {
        Self::start_on(Backend::Sqlite, overrides).await
    }

    pub async fn start_on(backend: Backend, overrides: &[(&str, &str)]) -> Self {
        let data_dir =
            std::env::temp_dir().join(format!("sse-notify-test-{}", uuid::Uuid::new_v4()));
        let mut env: HashMap<String, String> = overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.entry("SERVER_SHUTDOWN_TIMEOUT".into())
            .or_insert("2s".into());
        // Many servers run at once: none takes the default metrics port.
        env.entry("METRICS_ADDR".into()).or_default();
        // Tests send in bursts; the send-rate test sets its own.
        env.entry("SERVER_SENDS_PER_USER".into())
            .or_insert("1000000".into());
        // `make test` runs the suite once per transport mode.
        if let Ok(mode) = std::env::var("SERVER_DIRECT_RESPONSES") {
            env.entry("SERVER_DIRECT_RESPONSES".into()).or_insert(mode);
        }
        env.insert("DATA_DIR".into(), data_dir.display().to_string());
        let mut postgres_db = None;
        if backend == Backend::Postgres {
            let (name, url) = create_postgres_db().await;
            env.insert("DATABASE_URL".into(), url);
            postgres_db = Some(name);
        }
        Self::launch(data_dir, postgres_db, env).await
    }

    async fn launch(
        data_dir: std::path::PathBuf,
        postgres_db: Option<String>,
        env: HashMap<String, String>,
    ) -> Self {
        let config = Config::load(
            Some((Path::new("Leptos.toml"), include_str!("../../Leptos.toml"))),
            |name| env.get(name).cloned(),
        )
        .expect("test config");
        let env_for_admin = env.clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::run(listener, config, async move {
            let _ = stopped.await;
        }));
        let server = TestServer {
            base,
            stop: Some(stop),
            task,
            data_dir,
            postgres_db,
            env: env_for_admin,
        };
        // Ready once it answers (the database is connected and migrated first).
        let probe = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        for _ in 0..400 {
            if probe.get(server.url("/favicon.ico")).send().await.is_ok() {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("test server did not start");
    }

    /// Stops the server and keeps its database, for [`TestServer::restart`].
    pub async fn stop_keeping_data(mut self) -> Kept {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .expect("server stops within 5 s")
            .expect("server task did not panic")
            .expect("server stopped cleanly");
        Kept {
            data_dir: std::mem::take(&mut self.data_dir),
            postgres_db: self.postgres_db.take(),
            env: std::mem::take(&mut self.env),
        }
    }

    /// A new server (new port, new process state) on a kept database.
    pub async fn restart(kept: Kept) -> Self {
        Self::launch(kept.data_dir, kept.postgres_db, kept.env).await
    }

    /// The database this server uses, as a pool of the app's own kind
    /// (migrated), for tests that write to it directly.
    pub async fn db(&self) -> sse_notify::store::Db {
        database_of(&self.env).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A setting the server was started with.
    pub fn env_var(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }

    /// `host:port`.
    pub fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_string()
    }

    /// Runs the shipped binary's `admin …` command against this server's
    /// database, as an operator would; returns its output.
    pub fn admin(&self, args: &[&str]) -> std::process::Output {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sse_notify"));
        command.arg("admin").args(args).env_clear();
        command.env("PATH", std::env::var("PATH").unwrap_or_default());
        for key in ["DATA_DIR", "DATABASE_URL"] {
            if let Some(value) = self.env.get(key) {
                command.env(key, value);
            }
        }
        // No Leptos.toml of the test's working directory is needed.
        command.env("CONFIG_FILE", "/dev/null");
        command.output().expect("run sse_notify admin")
    }

    /// Grants the admin role to an existing account.
    pub fn grant_admin(&self, name: &str) {
        let out = self.admin(&["grant", name]);
        assert!(
            out.status.success(),
            "admin grant {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub async fn shutdown(mut self) -> Result<(), server::ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .expect("server stops within 5 s")
            .expect("server task did not panic");
        if let Some(name) = self.postgres_db.take() {
            drop_postgres_db(&name).await;
        }
        result
    }

    /// A client that keeps cookies, not signed in. Bounded waits: a test
    /// fails rather than hangs if the server stops answering.
    pub fn browser(&self) -> reqwest::Client {
        browser()
    }

    /// Creates an account and returns its signed-in client.
    pub async fn signup(&self, name: &str) -> User {
        signup_on(&self.base, name).await
    }

    /// Signs in an existing account on a new client (a new browser).
    pub async fn login(&self, name: &str) -> User {
        login_on(&self.base, name).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if !self.data_dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// A client that keeps cookies, not signed in (see [`TestServer::browser`]).
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Creates an account on the server at `base` without a cookie store;
/// returns its session cookie (`name=value`), for raw requests.
pub async fn signup_cookie(base: &str, name: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("{base}/api/auth/signup"))
        .form(&[("username", name), ("password", PASSWORD)])
        .send()
        .await
        .expect("POST /api/auth/signup");
    assert_eq!(response.status(), 200, "signup {name}");
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("sid="))
        .expect("session cookie");
    cookie.split(';').next().unwrap_or_default().to_string()
}

/// Creates an account on the server at `base`; returns its signed-in
/// client.
pub async fn signup_on(base: &str, name: &str) -> User {
    signed_in(base, "signup", name).await
}

/// Signs in an existing account on the server at `base`, in a new
/// browser.
pub async fn login_on(base: &str, name: &str) -> User {
    signed_in(base, "login", name).await
}

async fn signed_in(base: &str, action: &str, name: &str) -> User {
    let client = browser();
    let response = client
        .post(format!("{base}/api/auth/{action}"))
        .form(&[("username", name), ("password", PASSWORD)])
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST /api/auth/{action}: {e}"));
    assert_eq!(
        response.status(),
        200,
        "{action} {name}: {:?}",
        response.text().await
    );
    User {
        name: name.to_string(),
        client,
        base: base.to_string(),
    }
}

/// A stopped server's database and settings.
pub struct Kept {
    pub data_dir: std::path::PathBuf,
    pub postgres_db: Option<String>,
    pub env: HashMap<String, String>,
}

/// Connects to the database a server with `env` uses.
pub async fn database_of(env: &HashMap<String, String>) -> sse_notify::store::Db {
    let dir = env
        .get("DATA_DIR")
        .map(std::path::PathBuf::from)
        .expect("DATA_DIR");
    sse_notify::store::Db::connect(env.get("DATABASE_URL").map(String::as_str), &dir)
        .await
        .expect("connect to the test database")
}

/// A signed-in browser.
pub struct User {
    pub name: String,
    pub client: reqwest::Client,
    base: String,
}

impl User {
    /// The same browser (its cookies, its session) talking to the server
    /// at `base`: cookies belong to the host, not to the port.
    pub fn at(&self, base: &str) -> User {
        User {
            name: self.name.clone(),
            client: self.client.clone(),
            base: base.to_string(),
        }
    }

    /// This same browser after it signed in as `name`.
    pub fn now_signed_in_as(&self, name: &str) -> User {
        User {
            name: name.to_string(),
            client: self.client.clone(),
            base: self.base.clone(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET /api/sse{query}` with this user's cookies.
    pub async fn connect(&self, query: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/api/sse{query}")))
            .header("accept", "text/event-stream")
            .send()
            .await
            .expect("GET /api/sse")
    }

    /// Opens a stream and reads up to its `connected` event; returns the
    /// stream and the client id.
    /// Opens a stream and reads up to its `connected` event only.
    pub async fn open_raw(&self, query: &str) -> (SseStream, String) {
        let response = self.connect(query).await;
        Self::opened(&self.name, response).await
    }

    /// A fresh stream also starts with the inbox backlog, which is read
    /// here too (see [`SseStream::backlog`]).
    pub async fn open(&self, query: &str) -> (SseStream, String) {
        let response = self.connect(query).await;
        let (mut stream, id) = Self::opened(&self.name, response).await;
        if !query.contains("lastEventId=") {
            stream.take_backlog().await;
        }
        (stream, id)
    }

    /// Opens a stream resuming after `last_event_id` (sent as the
    /// `Last-Event-ID` header, as a browser does when it reconnects).
    pub async fn resume(&self, query: &str, last_event_id: &str) -> (SseStream, String) {
        let response = self
            .client
            .get(self.url(&format!("/api/sse{query}")))
            .header("accept", "text/event-stream")
            .header("last-event-id", last_event_id)
            .send()
            .await
            .expect("GET /api/sse");
        Self::opened(&self.name, response).await
    }

    async fn opened(name: &str, response: reqwest::Response) -> (SseStream, String) {
        let self_name = name;
        assert_eq!(response.status(), 200, "GET /api/sse as {self_name}");
        let mut stream = SseStream::new(response);
        assert_eq!(
            stream.next_within(Duration::from_secs(2)).await,
            Some(Item::Retry(3000))
        );
        let (name, data) = stream
            .next_event(Duration::from_secs(2))
            .await
            .expect("connected event");
        assert_eq!(name, "connected");
        let json: serde_json::Value = serde_json::from_str(&data).expect("connected is JSON");
        let id = json["clientId"].as_str().expect("clientId").to_string();
        (stream, id)
    }

    /// POSTs a JSON body; returns the status and the JSON answer.
    pub async fn post_json(&self, path: &str, body: &str) -> (u16, serde_json::Value) {
        let response = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("POST");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
        (status, json)
    }

    /// `GET /api/sse/clients{query}` as JSON.
    pub async fn clients(&self, query: &str) -> serde_json::Value {
        self.client
            .get(self.url(&format!("/api/sse/clients{query}")))
            .send()
            .await
            .expect("GET /api/sse/clients")
            .json()
            .await
            .expect("JSON")
    }
}

/// One thing read from an event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Event {
        id: Option<String>,
        name: String,
        data: String,
    },
    /// A `:` comment line (heartbeat), without the colon.
    Comment(String),
    Retry(u64),
}

/// The `inbox` summary a fresh stream starts with and the unread
/// notifications after it.
#[derive(Debug, Clone, Default)]
pub struct Backlog {
    pub unread: u64,
    /// How many unread events the summary said follow it.
    pub replayed: u64,
    /// (id, name, data), oldest first.
    pub events: Vec<(String, String, String)>,
}

impl Backlog {
    /// The inbox ids of the backlog's events.
    pub fn inbox_ids(&self) -> Vec<i64> {
        self.events.iter().map(|(id, _, _)| inbox_id(id)).collect()
    }
}

/// The inbox id at the end of a stored event's id (`<event id>:<n>`).
pub fn inbox_id(id: &str) -> i64 {
    id.rsplit_once(':')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or_else(|| panic!("{id:?} carries no inbox id"))
}

/// Reads `text/event-stream` by the WHATWG rules: lines end at CR LF, CR
/// or LF; fields `event`, `data`, `id`, `retry`; a blank line dispatches.
pub struct SseStream {
    /// What [`SseStream::take_backlog`] read.
    pub backlog: Backlog,
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
    /// Bytes of a UTF-8 character split across chunks.
    partial: Vec<u8>,
    pending_cr: bool,
    ready: std::collections::VecDeque<Item>,
    name: Option<String>,
    data: Vec<String>,
    id: Option<String>,
}

impl SseStream {
    pub fn new(response: reqwest::Response) -> Self {
        SseStream {
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
            partial: Vec::new(),
            pending_cr: false,
            ready: Default::default(),
            name: None,
            data: Vec::new(),
            id: None,
            backlog: Backlog::default(),
        }
    }

    /// Reads the `inbox` summary that comes next, and as many unread
    /// events as it announces (at most `sse.inbox_replay_max`).
    pub async fn take_backlog(&mut self) -> &Backlog {
        let (_, name, data) = self
            .next_with_id(Duration::from_secs(5))
            .await
            .expect("the inbox summary");
        assert_eq!(
            name, "inbox",
            "a fresh stream starts with the inbox: {data}"
        );
        let summary: serde_json::Value = serde_json::from_str(&data).expect("inbox is JSON");
        let unread = summary["unread"].as_u64().expect("unread count");
        let replayed = summary["replayed"].as_u64().unwrap_or(0);
        assert!(replayed <= unread, "the newest unread follow: {summary}");
        let mut events = Vec::new();
        for _ in 0..replayed {
            events.push(
                self.next_with_id(Duration::from_secs(5))
                    .await
                    .expect("an unread notification"),
            );
        }
        self.backlog = Backlog {
            unread,
            replayed,
            events,
        };
        &self.backlog
    }

    /// The next event or comment, or `None` when the stream ended or
    /// nothing came within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Item> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(item);
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next()).await;
            match chunk {
                Ok(Some(Ok(bytes))) => self.feed_bytes(&bytes),
                Ok(Some(Err(_))) | Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The next event with its id (comments and retry skipped).
    pub async fn next_with_id(&mut self, wait: Duration) -> Option<(String, String, String)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await? {
                Item::Event { id, name, data } => {
                    return Some((id.unwrap_or_default(), name, data));
                }
                _ => continue,
            }
        }
    }

    /// The next event (comments and retry skipped).
    pub async fn next_event(&mut self, wait: Duration) -> Option<(String, String)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await? {
                Item::Event { name, data, .. } => return Some((name, data)),
                _ => continue,
            }
        }
    }

    /// True if the server ended the stream within `wait`.
    pub async fn ends_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Ok(None) | Ok(Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => continue,
                Err(_) => return false,
            }
        }
    }

    fn feed_bytes(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.partial) {
            Ok(text) => text.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(e) => panic!("stream is not UTF-8: {e}"),
        };
        let rest = self.partial.split_off(valid);
        let text = String::from_utf8(std::mem::replace(&mut self.partial, rest)).expect("checked");
        self.feed(&text);
    }

    fn feed(&mut self, text: &str) {
        for c in text.chars() {
            if self.pending_cr {
                self.pending_cr = false;
                if c == '\n' {
                    continue;
                }
            }
            match c {
                '\r' => {
                    self.pending_cr = true;
                    self.line();
                }
                '\n' => self.line(),
                c => self.buffer.push(c),
            }
        }
    }

    fn line(&mut self) {
        let line = std::mem::take(&mut self.buffer);
        if line.is_empty() {
            if !self.data.is_empty() {
                self.ready.push_back(Item::Event {
                    id: self.id.clone(),
                    name: self.name.take().unwrap_or_else(|| "message".into()),
                    data: self.data.join("\n"),
                });
            }
            self.data.clear();
            self.name = None;
            return;
        }
        if let Some(comment) = line.strip_prefix(':') {
            self.ready
                .push_back(Item::Comment(comment.trim_start().to_string()));
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f.to_string(), v.strip_prefix(' ').unwrap_or(v).to_string()),
            None => (line, String::new()),
        };
        match field.as_str() {
            "event" => self.name = Some(value),
            "data" => self.data.push(value),
            "id" => self.id = Some(value),
            "retry" => {
                if let Ok(ms) = value.parse() {
                    self.ready.push_back(Item::Retry(ms));
                }
            }
            _ => {}
        }
    }
}
