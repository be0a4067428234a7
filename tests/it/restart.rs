//! A restart repeats nothing: one server process (no Redis, the default
//! deployment) killed with SIGKILL and started again on the same database.
//! A client that comes back with the id it last saw gets exactly the
//! stored notifications it missed (the inbox position on every id), never
//! the ones it had, and an `sse-reset` that says so; live events of the
//! gap are reported as possibly missed. SQLite and Postgres.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sse_notify::sse::{Audience, InboxConfig, Notifier, SseConfig, SseEvent, UserId};

use crate::inbox::on_both;
use crate::support::{
    Backend, SseStream, User, create_postgres_db, database_of, drop_postgres_db, inbox_id,
    signup_on,
};

const WAIT: Duration = Duration::from_secs(5);

/// The shipped binary on a port and a database that outlive it.
struct Single {
    env: HashMap<String, String>,
    postgres: Option<String>,
    port: u16,
    child: Option<Child>,
    data_dir: std::path::PathBuf,
}

impl Single {
    async fn start(backend: Backend) -> Single {
        let data_dir =
            std::env::temp_dir().join(format!("sse-notify-restart-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&data_dir).expect("data dir");
        let mut env = HashMap::new();
        env.insert("DATA_DIR".to_string(), data_dir.display().to_string());
        let mut postgres = None;
        if backend == Backend::Postgres {
            let (name, url) = create_postgres_db().await;
            env.insert("DATABASE_URL".to_string(), url);
            postgres = Some(name);
        }
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            probe.local_addr().expect("addr").port()
        };
        let mut server = Single {
            env,
            postgres,
            port,
            child: None,
            data_dir,
        };
        server.launch().await;
        server
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.join("server.log"))
            .expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_sse_notify"));
        command
            .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{}", self.port))
            .env("RUST_LOG", "info")
            .env("METRICS_ADDR", "")
            .env("SERVER_SENDS_PER_USER", "1000000")
            .env("SERVER_SHUTDOWN_TIMEOUT", "2s")
            .env_remove("DATABASE_URL")
            .env_remove("BUS_URL")
            .envs(&self.env)
            .stdout(Stdio::null())
            .stderr(log);
        self.child = Some(command.spawn().expect("start the server binary"));
        let probe = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if probe
                .get(format!("{}/favicon.ico", self.base()))
                .send()
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server did not answer within 30 s:\n{}", self.log());
    }

    /// SIGKILL: nothing is flushed, nobody is told.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn restart(&mut self) {
        self.kill();
        self.launch().await;
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("server.log")).unwrap_or_default()
    }

    async fn finish(mut self) {
        self.kill();
        if let Some(name) = self.postgres.take() {
            drop_postgres_db(&name).await;
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

impl Drop for Single {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- server log ---\n{}", self.log());
        }
    }
}

/// What a transactional send stores: the row is committed, and the
/// process that was to publish it is gone.
#[derive(Serialize, Deserialize)]
struct OrderShipped {
    order: u64,
}

impl SseEvent for OrderShipped {
    const NAME: &'static str = "order-shipped";
    const PERSISTENT: bool = true;
}

/// Commits `n` transactional sends for `user` on the stopped server's
/// database and publishes none of them (as if the sending process had
/// been killed between its commit and its publish). Their ids.
async fn committed_unpublished(env: &HashMap<String, String>, user: &str, n: u64) -> Vec<i64> {
    let db = database_of(env).await;
    let notifier = Notifier::with_inbox(
        SseConfig::default(),
        db.pool().clone(),
        InboxConfig::default(),
    );
    let mut ids = Vec::new();
    for order in 0..n {
        let mut tx = db.pool().begin().await.expect("begin");
        let pending = notifier
            .notify_in(
                &mut tx,
                Audience::user(UserId::new(user)),
                &OrderShipped { order },
            )
            .await
            .expect("stage");
        tx.commit().await.expect("commit");
        ids.extend(pending.ids().iter().map(|id| id.0));
        drop(pending);
    }
    db.pool().close().await;
    ids
}

/// A stored notification from `from` to `to`; its inbox id.
async fn notify(from: &User, to: &str, message: &str) -> i64 {
    let body = json!({ "user": to, "message": message }).to_string();
    let (status, answer) = from.post_json("/api/sse/test", &body).await;
    assert_eq!(status, 200, "{answer}");
    answer["id"].as_i64().expect("a stored notification's id")
}

/// A live-only event (not stored) from `from` to `to`.
async fn live(from: &User, to: &str, message: &str) {
    let body = json!({ "user": to, "event": "ping", "message": message }).to_string();
    let (status, answer) = from.post_json("/api/sse/test", &body).await;
    assert_eq!(status, 200, "{answer}");
}

/// A stream as an `EventSource` keeps it: every event in order, and the
/// id it would send back.
struct Watched {
    stream: SseStream,
    last_id: String,
    events: Vec<(String, String, String)>,
}

impl Watched {
    /// Opens a stream for `user`, resuming after `last_id` if given.
    async fn open(user: &User, last_id: Option<&str>) -> Watched {
        let mut request = user
            .client
            .get(user.url("/api/sse"))
            .header("accept", "text/event-stream");
        if let Some(id) = last_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.expect("GET /api/sse");
        assert_eq!(response.status(), 200);
        let mut watched = Watched {
            stream: SseStream::new(response),
            last_id: last_id.unwrap_or_default().to_string(),
            events: Vec::new(),
        };
        let (_, name, _) = watched.next().await.expect("connected");
        assert_eq!(name, "connected");
        watched
    }

    async fn next_within(&mut self, wait: Duration) -> Option<(String, String, String)> {
        let event = self.stream.next_with_id(wait).await?;
        if !event.0.is_empty() {
            self.last_id = event.0.clone();
        }
        self.events.push(event.clone());
        Some(event)
    }

    async fn next(&mut self) -> Option<(String, String, String)> {
        self.next_within(WAIT).await
    }

    /// Reads until `n` stored notifications arrived (since opening), then
    /// whatever else comes within `quiet`.
    async fn stored_until(&mut self, n: usize, quiet: Duration) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while stored(&self.events).len() < n {
            assert!(
                Instant::now() < deadline,
                "{n} stored notifications: {:?}",
                self.events
            );
            self.next().await;
        }
        while self.next_within(quiet).await.is_some() {}
    }
}

/// The inbox ids of the stored notifications among `events`, in order.
fn stored(events: &[(String, String, String)]) -> Vec<i64> {
    events
        .iter()
        .filter(|(id, name, _)| {
            id.contains(':') && (name == "notification" || name == "order-shipped")
        })
        .map(|(id, _, _)| inbox_id(id))
        .collect()
}

/// The `sse-reset` among `events`, as JSON.
fn reset_of(events: &[(String, String, String)]) -> Option<Value> {
    events
        .iter()
        .find(|(_, name, _)| name == "sse-reset")
        .map(|(_, _, data)| serde_json::from_str(data).expect("reset is JSON"))
}

on_both!(a_restart_repeats_no_stored_notification, after_stored);
async fn after_stored(backend: Backend) {
    let mut server = Single::start(backend).await;
    let base = server.base();
    let ann = signup_on(&base, "ann").await;
    let bob = signup_on(&base, "bob").await;
    let carol = signup_on(&base, "carol").await;
    let bob_id = user_id(&bob).await;

    let mut tab = Watched::open(&bob, None).await;
    let mut had = Vec::new();
    for n in 0..3 {
        had.push(notify(&ann, "bob", &format!("before {n}")).await);
    }
    tab.stored_until(3, Duration::from_millis(200)).await;
    assert_eq!(stored(&tab.events), had);
    let before_kill = tab.last_id.clone();
    assert!(
        before_kill.contains('.'),
        "ids carry the inbox position: {before_kill}"
    );

    server.kill();
    drop(tab);
    // Committed by a transactional send whose process died before it
    // published them: the restarted server's relay publishes them.
    let relayed = committed_unpublished(&server.env, &bob_id, 2).await;
    server.launch().await;

    // Two more while bob's browser comes back: one before it reconnects,
    // one racing with the reconnect.
    let mut expected: Vec<i64> = relayed.clone();
    expected.push(notify(&ann, "bob", "after 0").await);
    // A live event of the gap: bob cannot get it, and must be told so.
    live(&ann, "bob", "gone with the gap").await;
    let sender = {
        let ann = ann.at(&base);
        tokio::spawn(async move { notify(&ann, "bob", "after 1").await })
    };
    let mut back = Watched::open(&bob, Some(&before_kill)).await;
    expected.push(sender.await.expect("the concurrent send"));

    // Leave in the middle of the stored part, then come back again.
    let reset = loop {
        let (_, name, data) = back.next().await.expect("the reset");
        if name == "sse-reset" {
            break serde_json::from_str::<Value>(&data).expect("JSON");
        }
    };
    assert_eq!(reset["reason"], "other_epoch", "{reset}");
    assert!(reset["stored"]["resumed"].as_u64().is_some(), "{reset}");
    assert_eq!(reset["stored"]["skipped"], 0, "{reset}");
    while stored(&back.events).is_empty() {
        back.next().await.expect("the first resumed notification");
    }
    let first_part = stored(&back.events);
    let resumed_at = back.last_id.clone();
    drop(back);
    let mut again = Watched::open(&bob, Some(&resumed_at)).await;
    again
        .stored_until(
            expected.len() - first_part.len(),
            Duration::from_millis(1500),
        )
        .await;
    assert!(
        reset_of(&again.events).is_none(),
        "the same process resumes its own history: {:?}",
        again.events
    );

    let mut all = had.clone();
    all.extend(first_part);
    all.extend(stored(&again.events));
    let mut want = had.clone();
    want.extend(&expected);
    assert_eq!(all, want, "every stored notification once, in inbox order");
    assert!(
        want.windows(2).all(|w| w[0] < w[1]),
        "inbox order: {want:?}"
    );
    assert!(
        !again.events.iter().any(|(_, name, _)| name == "ping"),
        "the gap's live event is not replayed: {:?}",
        again.events
    );

    // A made-up position gets nothing of anyone else's: carol, claiming
    // to have seen nothing at all, gets her own (none), not bob's.
    let forged = format!("{}-1-0.0", "0123456789abcdef");
    let mut intruder = Watched::open(&carol, Some(&forged)).await;
    while intruder
        .next_within(Duration::from_millis(800))
        .await
        .is_some()
    {}
    assert!(stored(&intruder.events).is_empty(), "{:?}", intruder.events);
    let reset = reset_of(&intruder.events).expect("a reset");
    assert_eq!(reset["stored"]["resumed"], 0, "{reset}");
    // A position beyond the inbox's is not one of ours: a fresh start
    // (the unread backlog of her own inbox, none).
    let ahead = format!("{}-1-0.99999", "0123456789abcdef");
    let mut ahead = Watched::open(&carol, Some(&ahead)).await;
    while ahead
        .next_within(Duration::from_millis(800))
        .await
        .is_some()
    {}
    let reset = reset_of(&ahead.events).expect("a reset");
    assert!(reset.get("stored").is_none(), "{reset}");
    assert!(stored(&ahead.events).is_empty(), "{:?}", ahead.events);
    drop((intruder, ahead, again));
    server.finish().await;
}

on_both!(a_restart_after_live_events_only, after_live);
async fn after_live(backend: Backend) {
    let mut server = Single::start(backend).await;
    let base = server.base();
    let ann = signup_on(&base, "ann").await;
    let bob = signup_on(&base, "bob").await;
    // Unread before bob's tab opens: its backlog, not to be repeated.
    let old = notify(&ann, "bob", "old").await;
    let mut tab = Watched::open(&bob, None).await;
    tab.stored_until(1, Duration::from_millis(200)).await;
    assert_eq!(stored(&tab.events), vec![old]);
    for n in 0..3 {
        live(&ann, "bob", &format!("live {n}")).await;
    }
    while tab.events.iter().filter(|(_, n, _)| n == "ping").count() < 3 {
        tab.next().await.expect("a live event");
    }
    let last = tab.last_id.clone();
    assert!(!last.contains(':'), "last saw a live event: {last}");

    server.restart().await;
    drop(tab);
    let new = vec![
        notify(&ann, "bob", "new 0").await,
        notify(&ann, "bob", "new 1").await,
    ];
    let mut back = Watched::open(&bob, Some(&last)).await;
    back.stored_until(2, Duration::from_millis(1500)).await;
    assert_eq!(stored(&back.events), new, "{:?}", back.events);
    let reset = reset_of(&back.events).expect("a reset");
    assert_eq!(reset["stored"]["resumed"], 2, "{reset}");
    let summary = back
        .events
        .iter()
        .find(|(_, name, _)| name == "inbox")
        .map(|(_, _, data)| serde_json::from_str::<Value>(data).expect("JSON"))
        .expect("the inbox summary");
    assert_eq!(summary["unread"], 3, "{summary}");
    assert_eq!(summary["replayed"], 2, "{summary}");

    // An id from before inbox positions existed: the old behaviour, a
    // reset and the whole unread backlog.
    let old_style = last.split('.').next().expect("id").to_string();
    let mut legacy = Watched::open(&bob, Some(&old_style)).await;
    legacy.stored_until(3, Duration::from_millis(500)).await;
    let reset = reset_of(&legacy.events).expect("a reset");
    assert!(reset.get("stored").is_none(), "{reset}");
    drop((back, legacy));
    server.finish().await;
}

async fn user_id(user: &User) -> String {
    crate::inbox::user_id(user).await
}

on_both!(
    leaving_mid_resume_right_after_a_restart_gets_the_rest,
    mid_resume_at_once
);
async fn mid_resume_at_once(backend: Backend) {
    let mut server = Single::start(backend).await;
    let base = server.base();
    let ann = signup_on(&base, "ann").await;
    let bob = signup_on(&base, "bob").await;
    let mut tab = Watched::open(&bob, None).await;
    notify(&ann, "bob", "seen").await;
    tab.stored_until(1, Duration::from_millis(200)).await;
    let last = tab.last_id.clone();
    drop(tab);
    // Sent while bob's tab is away, before the restart: nothing is sent
    // after it, so the restarted server's history is empty when bob is
    // back.
    let mut missed = Vec::new();
    for n in 0..3 {
        missed.push(notify(&ann, "bob", &format!("missed {n}")).await);
    }
    server.restart().await;

    let mut back = Watched::open(&bob, Some(&last)).await;
    while stored(&back.events).is_empty() {
        back.next().await.expect("the first resumed notification");
    }
    let first = stored(&back.events);
    assert_eq!(first, missed[..1], "{:?}", back.events);
    let reset = reset_of(&back.events).expect("a reset");
    assert_eq!(reset["stored"]["resumed"], 3, "{reset}");
    let left_at = back.last_id.clone();
    drop(back);

    let mut again = Watched::open(&bob, Some(&left_at)).await;
    again.stored_until(2, Duration::from_millis(800)).await;
    assert_eq!(stored(&again.events), missed[1..], "{:?}", again.events);
    // Its place now covers all of them: once more, nothing again.
    let (connected_id, _, _) = again.events[0].clone();
    let position = |id: &str| -> u64 {
        id.split_once('.')
            .and_then(|(_, rest)| rest.split(':').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{id:?} carries an inbox position"))
    };
    assert!(position(&connected_id) >= position(&last), "{connected_id}");
    let done = again.last_id.clone();
    drop(again);
    let mut last_time = Watched::open(&bob, Some(&done)).await;
    while last_time
        .next_within(Duration::from_millis(800))
        .await
        .is_some()
    {}
    assert!(
        stored(&last_time.events).is_empty(),
        "{:?}",
        last_time.events
    );
    drop(last_time);
    server.finish().await;
}
