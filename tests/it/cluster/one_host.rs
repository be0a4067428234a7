//! The README's "Several server processes" example,
//! run as written on one host. The second process used to exit with
//! `cannot listen on 127.0.0.1:9464 (metrics.addr / METRICS_ADDR)`: both
//! took the default metrics address. The default now gives way (a
//! warning, no separate `/metrics`); an address that was set must still
//! be free.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{OwnRedis, free_port};
use crate::support::{create_postgres_db, drop_postgres_db};

/// The default `metrics.addr`.
const DEFAULT_METRICS: &str = "127.0.0.1:9464";

/// The commands of the README's example: the environment of each
/// `sse_notify` line (the `export`ed variables, then its own).
fn readme_example() -> Vec<BTreeMap<String, String>> {
    let readme = include_str!("../../../README.md");
    let section = readme
        .split_once("**Several server processes**")
        .expect("the README's \"Several server processes\" paragraph")
        .1;
    let block = section
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("a ```sh example in that paragraph")
        .0;
    let assignment = |word: &str| {
        word.split_once('=')
            .filter(|(name, _)| name.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
            .map(|(name, value)| (name.to_string(), value.to_string()))
    };
    let mut exported = BTreeMap::new();
    let mut commands = Vec::new();
    for line in block.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"export") {
            exported.extend(words[1..].iter().filter_map(|w| assignment(w)));
        } else if let Some(at) = words.iter().position(|w| w.ends_with("sse_notify")) {
            let mut env = exported.clone();
            env.extend(words[..at].iter().filter_map(|w| assignment(w)));
            commands.push(env);
        }
    }
    commands
}

/// A server process started from the repository's root (where the
/// README's commands run, so `Leptos.toml` is read) with exactly `env`.
struct Process {
    child: Child,
    base: String,
    log: std::path::PathBuf,
}

impl Process {
    fn start(env: &BTreeMap<String, String>) -> Process {
        let log =
            std::env::temp_dir().join(format!("sse-notify-one-host-{}.log", uuid::Uuid::new_v4()));
        let file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_sse_notify"));
        command
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .stdout(Stdio::null())
            .stderr(file);
        let base = format!("http://{}", env["LEPTOS_SITE_ADDR"]);
        let child = command.spawn().expect("start the server binary");
        Process { child, base, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics if it has exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!(
                "the server on {} exited ({status}):\n{}",
                self.base,
                self.log()
            );
        }
    }

    async fn readyz(&self) -> Option<u16> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        let response = client.get(format!("{}/readyz", self.base)).send().await;
        response.ok().map(|r| r.status().as_u16())
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            self.assert_running();
            if self.readyz().await == Some(200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} not ready within 30 s:\n{}", self.base, self.log());
    }

    /// Whether it serves the separate `/metrics` on `addr`.
    fn serves_metrics_on(&self, addr: &str) -> bool {
        self.log()
            .contains(&format!("metrics on http://{addr}/metrics"))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- log of {} ---\n{}", self.base, self.log());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

#[tokio::test]
async fn the_readme_two_process_example_runs_on_one_host() {
    let example = readme_example();
    assert!(example.len() >= 2, "the example starts several processes");
    let redis = OwnRedis::start().await;
    let (db_name, db_url) = create_postgres_db().await;
    let mut processes = Vec::new();
    for written in &example {
        assert!(
            written.contains_key("DATABASE_URL") && written.contains_key("BUS_URL"),
            "the example gives each process the database and the bus: {written:?}"
        );
        // The example's values, with this test's own database, Redis and
        // free ports in place of the ones written.
        let mut env = written.clone();
        env.insert("DATABASE_URL".into(), db_url.clone());
        env.insert("BUS_URL".into(), redis.url());
        env.insert(
            "LEPTOS_SITE_ADDR".into(),
            format!("127.0.0.1:{}", free_port()),
        );
        let mut process = Process::start(&env);
        process.wait_ready().await;
        processes.push(process);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for process in &mut processes {
        process.assert_running();
        assert_eq!(process.readyz().await, Some(200), "{}", process.log());
    }
    // Whichever got the default metrics address (something else on this
    // machine may hold it), the others said why they serve none.
    let on_default = processes
        .iter()
        .filter(|p| p.serves_metrics_on(DEFAULT_METRICS))
        .count();
    assert!(on_default <= 1);
    for process in &processes {
        if !process.serves_metrics_on(DEFAULT_METRICS) {
            assert!(
                process
                    .log()
                    .contains("the default metrics address is in use"),
                "{}",
                process.log()
            );
        }
    }
    drop(processes);
    drop_postgres_db(&db_name).await;
}

#[tokio::test]
async fn a_metrics_address_that_was_set_must_be_free() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let data_dir =
        std::env::temp_dir().join(format!("sse-notify-one-host-{}", uuid::Uuid::new_v4()));
    let out = tokio::task::spawn_blocking({
        let data_dir = data_dir.clone();
        move || {
            Command::new(env!("CARGO_BIN_EXE_sse_notify"))
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("DATA_DIR", &data_dir)
                .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{}", free_port()))
                .env("METRICS_ADDR", addr.to_string())
                .stdin(Stdio::null())
                .output()
                .expect("run the server binary")
        }
    });
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("the server exits at once")
        .expect("join");
    let _ = std::fs::remove_dir_all(&data_dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot listen on {addr} (metrics.addr / METRICS_ADDR)"
        )),
        "{stderr}"
    );
    drop(taken);
}
