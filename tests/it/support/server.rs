//! The real server on an ephemeral port, on SQLite or on a Postgres
//! database of its own, and what a stopped one leaves.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use sse_notify::config::Config;
use sse_notify::server;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::*;

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
            Some((
                Path::new("Leptos.toml"),
                include_str!("../../../Leptos.toml"),
            )),
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

    /// The user id of the account named `name`.
    pub async fn user_id(&self, name: &str) -> String {
        self.db()
            .await
            .user_by_username(name)
            .await
            .expect("db")
            .expect("user")
            .id
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
        self.command("admin", args)
    }

    /// Runs the shipped binary's `token …` command (service tokens).
    pub fn token(&self, args: &[&str]) -> std::process::Output {
        self.command("token", args)
    }

    /// Creates a service token with the CLI; returns its secret.
    pub fn create_token(&self, name: &str, scopes: &str, rate: Option<u32>) -> String {
        let rate = rate.map(|r| r.to_string());
        let mut args = vec!["create", name, "--scope", scopes];
        if let Some(rate) = &rate {
            args.extend(["--rate", rate]);
        }
        let out = self.token(&args);
        assert!(
            out.status.success(),
            "token create {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_string()
    }

    fn command(&self, verb: &str, args: &[&str]) -> std::process::Output {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sse_notify"));
        command.arg(verb).args(args).env_clear();
        command.env("PATH", std::env::var("PATH").unwrap_or_default());
        for key in ["DATA_DIR", "DATABASE_URL"] {
            if let Some(value) = self.env.get(key) {
                command.env(key, value);
            }
        }
        // No Leptos.toml of the test's working directory is needed.
        command.env("CONFIG_FILE", "/dev/null");
        command.output().expect("run sse_notify")
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
