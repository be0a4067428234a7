//! Several real server processes (the shipped binary) sharing one
//! Postgres database and one Redis bus: what the bus promises across
//! processes. Each test has its own database and its own key prefix on
//! the shared Redis (127.0.0.1:6379, or `TEST_REDIS_URL`); a test that
//! restarts Redis runs its own `redis-server` on a free port.

mod delivery;
mod drain;
mod faults;
mod one_host;
mod own_read;
mod presence;
mod relay;
mod roles;
mod send_rate;
mod service;
mod shards;
mod sign_out;
mod stats;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{SseStream, User, create_postgres_db, drop_postgres_db};

/// A connection to the Redis at `url`.
pub async fn redis_at(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis")
}

/// The id of the account named `name` in the database at `db_url`.
pub async fn user_id(db_url: &str, name: &str) -> String {
    let db = sse_notify::store::Db::connect(Some(db_url), &std::env::temp_dir())
        .await
        .expect("db");
    db.user_by_username(name)
        .await
        .expect("query")
        .expect("user")
        .id
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    probe.local_addr().expect("addr").port()
}

/// One database and one bus that instances join.
pub struct Cluster {
    db_name: String,
    pub db_url: String,
    pub prefix: String,
    pub redis_url: String,
    /// Extra settings for every instance.
    pub env: Vec<(String, String)>,
}

impl Cluster {
    pub async fn new() -> Self {
        Self::on(&redis_url()).await
    }

    pub async fn on(redis_url: &str) -> Self {
        let (db_name, db_url) = create_postgres_db().await;
        Cluster {
            db_name,
            db_url,
            prefix: format!("test-{}", uuid::Uuid::new_v4().simple()),
            redis_url: redis_url.to_string(),
            env: Vec::new(),
        }
    }

    /// Starts an instance named `name` and waits until it answers.
    pub async fn start(&self, name: &str) -> Instance {
        self.start_with(name, &[]).await
    }

    /// [`Cluster::start`] with settings of its own beside the cluster's.
    pub async fn start_with(&self, name: &str, own: &[(&str, &str)]) -> Instance {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let data_dir =
            std::env::temp_dir().join(format!("sse-notify-cluster-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&data_dir).expect("data dir");
        let log = std::fs::File::create(data_dir.join("server.log")).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_sse_notify"));
        command
            .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
            .env("DATA_DIR", &data_dir)
            .env("DATABASE_URL", &self.db_url)
            .env("BUS_URL", &self.redis_url)
            .env("BUS_PREFIX", &self.prefix)
            .env("BUS_INSTANCE", name)
            .env("BUS_REPORT_INTERVAL", "500ms")
            .env("BUS_TIMEOUT", "1s")
            .env("SERVER_SHUTDOWN_TIMEOUT", "2s")
            .env("RUST_LOG", "info")
            .env("METRICS_ADDR", "")
            .env("SERVER_SENDS_PER_USER", "1000000")
            .stdout(Stdio::null())
            .stderr(log);
        if let Ok(mode) = std::env::var("SERVER_DIRECT_RESPONSES") {
            command.env("SERVER_DIRECT_RESPONSES", mode);
        }
        for (k, v) in &self.env {
            command.env(k, v);
        }
        for (k, v) in own {
            command.env(k, v);
        }
        let child = command.spawn().expect("start the server binary");
        let instance = Instance {
            name: name.to_string(),
            child,
            base,
            data_dir,
        };
        instance.wait_ready().await;
        instance
    }

    /// `sse_notify admin grant <name>` against the cluster's database.
    pub fn grant_admin(&self, name: &str) {
        let out = Command::new(env!("CARGO_BIN_EXE_sse_notify"))
            .args(["admin", "grant", name])
            .env("DATABASE_URL", &self.db_url)
            .env("DATA_DIR", std::env::temp_dir())
            .output()
            .expect("run admin");
        assert!(
            out.status.success(),
            "admin grant {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `sse_notify token …` against the cluster's database.
    pub fn token(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_sse_notify"))
            .arg("token")
            .args(args)
            .env("DATABASE_URL", &self.db_url)
            .env("DATA_DIR", std::env::temp_dir())
            .env("CONFIG_FILE", "/dev/null")
            .output()
            .expect("run token")
    }

    /// A new service token's secret.
    pub fn create_token(&self, name: &str, scopes: &str) -> String {
        let out = self.token(&["create", name, "--scope", scopes]);
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

    /// A connection to the cluster's Redis (for what the tests do there).
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis_at(&self.redis_url).await
    }

    /// Deletes the bus's stream key (its epoch key stays).
    pub async fn delete_stream(&self) {
        let deleted: i64 = redis::cmd("DEL")
            .arg(self.stream_key())
            .query_async(&mut self.redis().await)
            .await
            .expect("DEL");
        assert_eq!(deleted, 1);
    }

    /// The bus's stream key.
    pub fn stream_key(&self) -> String {
        format!("{{{}}}:stream", self.prefix)
    }

    pub async fn finish(self) {
        drop_postgres_db(&self.db_name).await;
    }
}

/// One server process.
pub struct Instance {
    pub name: String,
    child: Child,
    pub base: String,
    data_dir: std::path::PathBuf,
}

impl Instance {
    async fn wait_ready(&self) {
        let probe = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if probe
                .get(format!("{}/favicon.ico", self.base))
                .send()
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} did not answer within 30 s:\n{}", self.name, self.log());
    }

    /// SIGKILL: no shutdown, no goodbye to Redis or the clients.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: the drain, then the exit.
    pub fn terminate(&self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid.
        let done = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(done, 0, "SIGTERM {}", self.name);
    }

    /// Waits for the process to exit by itself; its exit status.
    pub async fn exit_within(&mut self, wait: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running after {wait:?}:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("server.log")).unwrap_or_default()
    }

    /// `user`'s browser talking to this instance.
    pub fn as_user(&self, user: &User) -> User {
        user.at(&self.base)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- log of instance {} ---\n{}", self.name, self.log());
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A `redis-server` of the test's own, on a free port, without
/// persistence (a restart loses everything, as a flushed Redis does).
pub struct OwnRedis {
    pub port: u16,
    child: Option<Child>,
    /// With an append-only file here (every write synced): a restart
    /// keeps the stream.
    persistent: Option<std::path::PathBuf>,
}

impl OwnRedis {
    pub async fn start() -> Self {
        let mut redis = Self::not_started();
        redis.restart().await;
        redis
    }

    /// A free port where it will run once [`OwnRedis::restart`]ed.
    pub fn not_started() -> Self {
        OwnRedis {
            port: free_port(),
            child: None,
            persistent: None,
        }
    }

    /// Keeps its data across restarts (AOF, `appendfsync always`).
    pub async fn start_persistent() -> Self {
        let dir = std::env::temp_dir().join(format!("sse-notify-redis-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut redis = Self::not_started();
        redis.persistent = Some(dir);
        redis.restart().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// (Re)starts it, empty, and waits until it answers.
    pub async fn restart(&mut self) {
        self.stop();
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""]);
        match &self.persistent {
            Some(dir) => command
                .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
                .arg(dir),
            None => command
                .args(["--appendonly", "no", "--dir"])
                .arg(std::env::temp_dir()),
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian's package) on PATH");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(client) = redis::Client::open(self.url())
                && let Ok(mut conn) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server on port {} did not start", self.port);
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = &self.persistent {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Sends a live event named `event` with `message` to `to` (a username)
/// through `via`'s server; panics unless it is accepted.
pub async fn send(via: &User, to: &str, event: &str, message: &str) -> serde_json::Value {
    let body = serde_json::json!({ "user": to, "event": event, "message": message });
    let (status, json) = via.post_json("/api/sse/test", &body.to_string()).await;
    assert_eq!(status, 200, "send {message} via {}: {json}", via.url(""));
    json
}

/// The `tick` messages of `stream` (other events skipped, an `sse-reset`
/// fails) until `last` arrives, with their ids.
pub async fn ticks_until(stream: &mut SseStream, last: &str) -> Vec<(String, String)> {
    let mut got = Vec::new();
    loop {
        let (id, name, data) = stream
            .next_with_id(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("no tick {last} (got {} before)", got.len()));
        assert_ne!(name, "sse-reset", "continuity kept: {data}");
        if name != "tick" {
            continue;
        }
        let json: serde_json::Value = serde_json::from_str(&data).expect("JSON");
        let message = json["message"].as_str().expect("message").to_string();
        let done = message == last;
        got.push((id, message));
        if done {
            return got;
        }
    }
}
