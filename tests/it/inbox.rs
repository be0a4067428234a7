//! The inbox: persistent notifications for offline users, read state kept
//! in step across tabs, restarts, the switch-over from unread to live,
//! transactional sends, retention and the per-user cap. Every test runs
//! on SQLite and on Postgres.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::Row;
use sse_notify::sse::{
    Audience, Identity, InboxConfig, Notifier, SessionId, SseConfig, SseEvent, UserId,
};

use crate::support::{
    Backend, SseStream, TestServer, User, create_postgres_db, database_of, drop_postgres_db,
    inbox_id,
};

const WAIT: Duration = Duration::from_secs(5);

/// Runs `$body(backend)` once per database engine.
macro_rules! on_both {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$body(crate::support::Backend::Sqlite).await;
            }
            #[tokio::test]
            async fn postgres() {
                super::$body(crate::support::Backend::Postgres).await;
            }
        }
    };
}
pub(crate) use on_both;

/// Sends a `notification` to `to` (persistent); returns its inbox id.
async fn notify(from: &User, to: &str, message: &str) -> i64 {
    let body = json!({ "user": to, "message": message }).to_string();
    let (status, answer) = from.post_json("/api/sse/test", &body).await;
    assert_eq!(status, 200, "{answer}");
    answer["id"].as_i64().expect("a stored notification's id")
}

pub async fn user_id(user: &User) -> String {
    let me: Value = user
        .client
        .post(user.url("/api/auth/me"))
        .send()
        .await
        .expect("POST /api/auth/me")
        .json()
        .await
        .expect("JSON");
    me["id"].as_str().expect("id").to_string()
}

/// The next event, which must be an `inbox` summary.
async fn next_summary(stream: &mut SseStream) -> Value {
    let (_, name, data) = stream.next_with_id(WAIT).await.expect("an inbox event");
    assert_eq!(name, "inbox", "{data}");
    serde_json::from_str(&data).expect("JSON")
}

fn messages(stream: &SseStream) -> Vec<String> {
    stream
        .backlog
        .events
        .iter()
        .map(|(_, name, data)| {
            assert_eq!(name, "notification");
            let v: Value = serde_json::from_str(data).expect("JSON");
            v["message"].as_str().expect("message").to_string()
        })
        .collect()
}

on_both!(
    offline_user_gets_unread_and_read_state_follows,
    offline_user
);
async fn offline_user(backend: Backend) {
    let server = TestServer::start_on(backend, &[]).await;
    let ann = server.signup("ann").await;
    let bob = server.signup("bob").await;

    // Bob has no tab open.
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(notify(&ann, "bob", &format!("note {n}")).await);
    }
    let (mut tab1, _) = bob.open("").await;
    assert_eq!(tab1.backlog.unread, 5);
    assert_eq!(tab1.backlog.replayed, 5);
    assert_eq!(tab1.backlog.inbox_ids(), ids, "all five, oldest first");
    assert_eq!(
        messages(&tab1),
        (0..5).map(|n| format!("note {n}")).collect::<Vec<_>>()
    );
    let phone = server.login("bob").await;
    let (mut tab2, _) = phone.open("").await;
    assert_eq!(tab2.backlog.inbox_ids(), ids);

    // Two read in one tab: every stream of Bob's hears it.
    let (status, answer) = bob
        .post_json(
            "/api/inbox/read",
            &json!({ "ids": [ids[0], ids[1]] }).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["unread"], 3);
    for tab in [&mut tab1, &mut tab2] {
        let summary = next_summary(tab).await;
        assert_eq!(summary["unread"], 3);
        assert_eq!(summary["read"], json!([ids[0], ids[1]]));
    }

    // A new stream (a reload) gets only the three still unread.
    drop(tab1);
    let (tab3, _) = bob.open("").await;
    assert_eq!(tab3.backlog.unread, 3);
    assert_eq!(tab3.backlog.inbox_ids(), ids[2..].to_vec());

    // The list: newest first, page by page, with the read state.
    let (status, page) = bob.post_json("/api/inbox/list", r#"{"limit":2}"#).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["unread"], 3);
    let got: Vec<i64> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(got, vec![ids[4], ids[3]]);
    let mut seen = got;
    let mut before = page["nextBefore"].clone();
    while !before.is_null() {
        let (status, page) = bob
            .post_json(
                "/api/inbox/list",
                &json!({ "before": before, "limit": 2 }).to_string(),
            )
            .await;
        assert_eq!(status, 200, "{page}");
        for item in page["items"].as_array().expect("items") {
            let id = item["id"].as_i64().expect("id");
            let read = !item["readAt"].is_null();
            assert_eq!(read, id == ids[0] || id == ids[1], "read state of {id}");
            seen.push(id);
        }
        before = page["nextBefore"].clone();
    }
    assert_eq!(seen, ids.iter().rev().copied().collect::<Vec<_>>());

    // Mark all read on the phone: the other tab goes to 0.
    let (status, answer) = phone.post_json("/api/inbox/read-all", "{}").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["unread"], 0);
    assert_eq!(next_summary(&mut tab2).await["unread"], 0);
    let (tab4, _) = bob.open("").await;
    assert_eq!(tab4.backlog.unread, 0);
    assert!(tab4.backlog.events.is_empty());
    drop((tab2, tab3, tab4));

    // A persistent broadcast reaches Bob though he is offline: one row,
    // read state per user.
    let dan = server.signup("dan").await;
    server.grant_admin("ann");
    let boss = server.login("ann").await;
    let (status, answer) = boss
        .post_json("/api/sse/broadcast", r#"{"message":"maintenance tonight"}"#)
        .await;
    assert_eq!(status, 200, "{answer}");
    let broadcast = answer["id"].as_i64().expect("stored");
    let (tab5, _) = bob.open("").await;
    assert_eq!(tab5.backlog.inbox_ids(), vec![broadcast]);
    assert_eq!(messages(&tab5), vec!["maintenance tonight".to_string()]);
    let (status, answer) = bob
        .post_json(
            "/api/inbox/read",
            &json!({ "ids": [broadcast] }).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["unread"], 0);
    let (tab6, _) = bob.open("").await;
    assert_eq!(tab6.backlog.unread, 0, "read by Bob");
    let (dan_tab, _) = dan.open("").await;
    assert_eq!(
        dan_tab.backlog.inbox_ids(),
        vec![broadcast],
        "still unread for others"
    );
    // An account created after the broadcast does not get it.
    let carol = server.signup("carol").await;
    let (carol_tab, _) = carol.open("").await;
    assert_eq!(carol_tab.backlog.unread, 0);
    assert!(listed(&carol).await.is_empty());
    let (status, answer) = carol
        .post_json(
            "/api/inbox/read",
            &json!({ "ids": [broadcast] }).to_string(),
        )
        .await;
    assert_eq!(status, 404, "not Carol's: {answer}");
    assert!(listed(&carol).await.is_empty());
    let stored: i64 = sqlx::query("SELECT COUNT(*) FROM inbox WHERE notification_id = $1")
        .bind(broadcast)
        .fetch_one(server.db().await.pool())
        .await
        .expect("count")
        .get(0);
    assert_eq!(
        stored, 1,
        "one row: Bob's read; none for those who did not read"
    );
    drop((tab5, tab6, dan_tab, carol_tab));
    server.shutdown().await.expect("clean shutdown");
}

on_both!(nothing_is_lost_across_a_restart, restart);
async fn restart(backend: Backend) {
    let server = TestServer::start_on(backend, &[]).await;
    let ann = server.signup("ann").await;
    server.signup("bob").await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(notify(&ann, "bob", &format!("before restart {n}")).await);
    }
    let kept = server.stop_keeping_data().await;
    let server = TestServer::restart(kept).await;
    let bob = server.login("bob").await;
    let (stream, _) = bob.open("").await;
    assert_eq!(stream.backlog.unread, 3);
    assert_eq!(stream.backlog.inbox_ids(), ids);
    drop(stream);
    server.shutdown().await.expect("clean shutdown");
}

on_both!(only_the_newest_unread_are_streamed, newest_unread);
async fn newest_unread(backend: Backend) {
    let server = TestServer::start_on(backend, &[("SSE_INBOX_REPLAY_MAX", "10")]).await;
    let ann = server.signup("ann").await;
    let bob = server.signup("bob").await;
    let mut ids = Vec::new();
    for n in 0..15 {
        ids.push(notify(&ann, "bob", &format!("{n}")).await);
    }
    let (stream, _) = bob.open("").await;
    assert_eq!(stream.backlog.unread, 15, "the count is of every unread");
    assert_eq!(stream.backlog.replayed, 10);
    assert_eq!(
        stream.backlog.inbox_ids(),
        ids[5..].to_vec(),
        "the newest 10, oldest first"
    );
    drop(stream);
    server.shutdown().await.expect("clean shutdown");
}

on_both!(switch_over_has_no_gap_and_no_duplicate, switch_over);
async fn switch_over(backend: Backend) {
    const SENDS: usize = 500;
    const CONNECTS: usize = 20;
    let server = TestServer::start_on(backend, &[("SSE_INBOX_REPLAY_MAX", "1000")]).await;
    let ann = server.signup("ann").await;
    let bob = server.signup("bob").await;

    // Two concurrent senders, 250 each.
    let senders = two_senders_to_bob(&ann, &server, SENDS / 2, Duration::from_millis(3));

    // Meanwhile Bob connects 20 times without Last-Event-ID, each time
    // reading for a while.
    let mut connections: Vec<Vec<i64>> = Vec::new();
    for c in 0..CONNECTS {
        let (stream, _) = bob.open_raw("").await;
        connections
            .push(backlog_then_live(stream, Duration::from_millis(40 + 10 * c as u64)).await);
    }
    let mut all: Vec<i64> = Vec::new();
    for sender in senders {
        all.extend(sender.await.expect("sender"));
    }
    all.sort_unstable();
    assert_eq!(all.len(), SENDS);
    let mut overlapping = 0;
    for (n, got) in connections.iter().enumerate() {
        // Unread then live, one ordered run: exactly the first ids sent,
        // each once.
        assert_eq!(
            got[..],
            all[..got.len()],
            "connection {n}: every id once, in order, no gap"
        );
        if !got.is_empty() && got.len() < SENDS {
            overlapping += 1;
        }
    }
    assert!(
        overlapping >= CONNECTS / 2,
        "most connections opened while sends went on ({overlapping})"
    );
    // And a last one, after all: all 500 unread.
    let (mut stream, _) = bob.open_raw("").await;
    assert_eq!(next_summary(&mut stream).await["unread"], SENDS as u64);
    drop(stream);
    server.shutdown().await.expect("clean shutdown");
}

/// The inbox ids a fresh stream gets: its whole backlog, then live
/// events for `live` more.
async fn backlog_then_live(mut stream: SseStream, live: Duration) -> Vec<i64> {
    let summary = next_summary(&mut stream).await;
    let unread = summary["unread"].as_u64().expect("unread");
    let mut got = Vec::new();
    let until = tokio::time::Instant::now() + live;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        // The backlog is read in full, whatever the time.
        let wait = if (got.len() as u64) < unread {
            WAIT
        } else {
            left
        };
        match stream.next_with_id(wait).await {
            Some((id, name, _)) => {
                assert_eq!(name, "notification");
                got.push(inbox_id(&id));
            }
            None => break,
        }
        if tokio::time::Instant::now() >= until && got.len() as u64 >= unread {
            break;
        }
    }
    assert!(got.len() as u64 >= unread, "the whole backlog arrived");
    got
}

on_both!(
    concurrent_fresh_streams_of_one_user_miss_nothing,
    concurrent_switch_over
);
/// Fresh streams of one user opening together share a backlog read when
/// they want the same (`inbox::shared_read`): with two senders storing
/// notifications meanwhile, every stream still gets each id once, in
/// order, no gap between its backlog and its live events.
async fn concurrent_switch_over(backend: Backend) {
    const BEFORE: usize = 40;
    const SENDS: usize = 200;
    const ROUNDS: usize = 4;
    const AT_ONCE: usize = 8;
    let server = TestServer::start_on(backend, &[("SSE_INBOX_REPLAY_MAX", "1000")]).await;
    let ann = server.signup("ann").await;
    let bob = server.signup("bob").await;
    let mut all = Vec::new();
    for n in 0..BEFORE {
        all.push(notify(&ann, "bob", &format!("before {n}")).await);
    }
    // All at once, nothing sent meanwhile: every stream gets the same 40.
    let opened = futures::future::join_all((0..AT_ONCE).map(|_| async {
        let (stream, _) = bob.open_raw("").await;
        backlog_then_live(stream, Duration::ZERO).await
    }))
    .await;
    for got in &opened {
        assert_eq!(got[..], all[..], "the same backlog for every stream");
    }

    let senders = two_senders_to_bob(&ann, &server, SENDS / 2, Duration::from_millis(2));
    let mut connections = Vec::new();
    for round in 0..ROUNDS {
        let live = Duration::from_millis(30 + 20 * round as u64);
        connections.extend(
            futures::future::join_all((0..AT_ONCE).map(|_| async {
                let (stream, _) = bob.open_raw("").await;
                backlog_then_live(stream, live).await
            }))
            .await,
        );
    }
    for sender in senders {
        all.extend(sender.await.expect("sender"));
    }
    all.sort_unstable();
    assert_eq!(all.len(), BEFORE + SENDS);
    for (n, got) in connections.iter().enumerate() {
        assert!(got.len() >= BEFORE, "connection {n}: its backlog");
        assert_eq!(
            got[..],
            all[..got.len()],
            "connection {n}: every id once, in order, no gap"
        );
    }
    server.shutdown().await.expect("clean shutdown");
}

/// Two concurrent senders from `ann`, each storing `each` notifications
/// for bob with `pause` between them; each returns its inbox ids.
fn two_senders_to_bob(
    ann: &User,
    server: &TestServer,
    each: usize,
    pause: Duration,
) -> Vec<tokio::task::JoinHandle<Vec<i64>>> {
    (0..2)
        .map(|s| {
            let ann = ann.client.clone();
            let url = ann_url(server);
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0..each {
                    let body = json!({ "user": "bob", "message": format!("{s}-{n}") });
                    let answer: Value = ann
                        .post(&url)
                        .json(&body)
                        .send()
                        .await
                        .expect("send")
                        .json()
                        .await
                        .expect("JSON");
                    ids.push(answer["id"].as_i64().expect("id"));
                    tokio::time::sleep(pause).await;
                }
                ids
            })
        })
        .collect()
}

fn ann_url(server: &TestServer) -> String {
    server.url("/api/sse/test")
}

/// The event of the transactional tests.
#[derive(Serialize, Deserialize)]
struct OrderShipped {
    order: u64,
}

impl SseEvent for OrderShipped {
    const NAME: &'static str = "order-shipped";
    const PERSISTENT: bool = true;
}

/// A migrated database of its own (no server on it, so no relay but the
/// test's).
struct OwnDb {
    env: HashMap<String, String>,
    postgres: Option<String>,
}

impl OwnDb {
    async fn create(backend: Backend) -> OwnDb {
        let dir = std::env::temp_dir().join(format!("sse-notify-inbox-{}", uuid::Uuid::new_v4()));
        let mut env = HashMap::new();
        env.insert("DATA_DIR".to_string(), dir.display().to_string());
        let mut postgres = None;
        if backend == Backend::Postgres {
            let (name, url) = create_postgres_db().await;
            env.insert("DATABASE_URL".to_string(), url);
            postgres = Some(name);
        }
        OwnDb { env, postgres }
    }

    async fn remove(self) {
        if let Some(name) = &self.postgres {
            drop_postgres_db(name).await;
        }
        if let Some(dir) = self.env.get("DATA_DIR") {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

async fn orders(pool: &sqlx::AnyPool) -> i64 {
    sqlx::query("SELECT COUNT(*) FROM users WHERE username LIKE 'order-%'")
        .fetch_one(pool)
        .await
        .expect("count")
        .get(0)
}

/// The business write the notification belongs to (an "order"; the
/// users table stands in for the app's own).
async fn write_order(tx: &mut sqlx::AnyConnection, n: u64) {
    sqlx::query(
        "INSERT INTO users (id, username, username_key, password_hash, created_at) \
         VALUES ($1, $2, $3, 'x', 0)",
    )
    .bind(format!("order-{n}"))
    .bind(format!("order-{n}"))
    .bind(format!("order-{n}"))
    .execute(tx)
    .await
    .expect("the order");
}

on_both!(transactional_sends_follow_the_transaction, transactional);
async fn transactional(backend: Backend) {
    let own = OwnDb::create(backend).await;
    let db = database_of(&own.env).await;
    let pool = db.pool().clone();
    let notifier = Notifier::with_inbox(SseConfig::default(), pool.clone(), InboxConfig::default());
    let inbox = notifier.inbox().expect("inbox").clone();
    let user = UserId::new("buyer");
    let identity = Identity {
        user: user.clone(),
        username: "buyer".into(),
        session: SessionId::new("s1"),
        tags: Vec::new(),
        since: None,
    };
    let mut client = notifier
        .registry()
        .register(&identity, Vec::new())
        .expect("register");

    // Commit: delivered once (by the caller's publish; the relay finds
    // nothing left).
    let mut tx = pool.begin().await.expect("begin");
    write_order(&mut tx, 1).await;
    let pending = notifier
        .notify_in(
            &mut tx,
            Audience::user(user.clone()),
            &OrderShipped { order: 1 },
        )
        .await
        .expect("stage");
    let id = pending.ids()[0];
    assert!(client.try_next().is_none(), "nothing before the commit");
    tx.commit().await.expect("commit");
    assert_eq!(pending.publish().await.expect("publish"), 1);
    let frame = client.try_next().expect("delivered");
    let text = String::from_utf8_lossy(&frame);
    assert!(
        text.contains(&format!(":{id}\nevent: order-shipped\n")),
        "{text}"
    );
    assert!(client.try_next().is_none(), "once");
    assert_eq!(inbox.relay_once().await.expect("relay"), 0);
    assert!(client.try_next().is_none());

    // Rollback: neither the order nor the notification exists; nothing
    // is ever delivered.
    let mut tx = pool.begin().await.expect("begin");
    write_order(&mut tx, 2).await;
    let pending = notifier
        .notify_in(
            &mut tx,
            Audience::user(user.clone()),
            &OrderShipped { order: 2 },
        )
        .await
        .expect("stage");
    tx.rollback().await.expect("rollback");
    assert_eq!(pending.publish().await.expect("publish"), 0);
    assert_eq!(inbox.relay_once().await.expect("relay"), 0);
    assert!(
        client.try_next().is_none(),
        "a rolled-back send is never delivered"
    );
    assert_eq!(orders(&pool).await, 1);
    assert_eq!(inbox.unread_count(&user).await.expect("count"), 1);

    // A rolled-back handle published after another transaction took the
    // same id (SQLite reuses it: AUTOINCREMENT rolls back too): what goes
    // out is the committed row, once, never the rolled-back copy.
    let mut tx = pool.begin().await.expect("begin");
    let rolled_back = notifier
        .notify_in(
            &mut tx,
            Audience::user(UserId::new("nobody")),
            &OrderShipped { order: 4 },
        )
        .await
        .expect("stage");
    tx.rollback().await.expect("rollback");
    let mut tx = pool.begin().await.expect("begin");
    let committed = notifier
        .notify_in(
            &mut tx,
            Audience::user(user.clone()),
            &OrderShipped { order: 5 },
        )
        .await
        .expect("stage");
    tx.commit().await.expect("commit");
    let committed_id = committed.ids()[0];
    let reached =
        rolled_back.publish().await.expect("publish") + committed.publish().await.expect("publish");
    assert_eq!(reached, 1);
    let frame = client.try_next().expect("the committed one");
    let text = String::from_utf8_lossy(&frame);
    assert!(text.contains(&format!(":{committed_id}\n")), "{text}");
    assert!(
        text.contains(r#"{"order":5}"#),
        "the committed payload: {text}"
    );
    assert!(client.try_next().is_none(), "once");
    assert_eq!(inbox.unread_count(&user).await.expect("count"), 2);

    // Committed, never published by the caller: the relay does it, once.
    let mut tx = pool.begin().await.expect("begin");
    write_order(&mut tx, 3).await;
    let forgotten = notifier
        .notify_in(
            &mut tx,
            Audience::user(user.clone()),
            &OrderShipped { order: 3 },
        )
        .await
        .expect("stage");
    tx.commit().await.expect("commit");
    let forgotten_id = forgotten.ids()[0];
    drop(forgotten);
    assert_eq!(inbox.relay_once().await.expect("relay"), 1);
    let frame = client.try_next().expect("relayed");
    assert!(String::from_utf8_lossy(&frame).contains(&format!(":{forgotten_id}\n")));
    assert!(client.try_next().is_none());
    assert_eq!(inbox.relay_once().await.expect("relay"), 0);
    assert_eq!(inbox.unread_count(&user).await.expect("count"), 3);

    drop(client);
    pool.close().await;
    own.remove().await;
}

/// Set by the parent test: the child stages a notification for this user
/// id, commits, says so in the marker file, and waits to be killed.
const CHILD_USER: &str = "OUTBOX_CHILD_USER";
const CHILD_MARKER: &str = "OUTBOX_CHILD_MARKER";

/// The process killed between commit and publish (run by the test below,
/// in a child process of this test binary).
#[tokio::test]
#[ignore = "run as a child process by a_send_killed_after_commit_is_published_after_restart"]
async fn outbox_child() {
    let (Ok(user), Ok(marker)) = (std::env::var(CHILD_USER), std::env::var(CHILD_MARKER)) else {
        return;
    };
    let env: HashMap<String, String> = ["DATA_DIR", "DATABASE_URL"]
        .into_iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    let db = database_of(&env).await;
    let notifier = Notifier::with_inbox(
        SseConfig::default(),
        db.pool().clone(),
        InboxConfig::default(),
    );
    let mut tx = db.pool().begin().await.expect("begin");
    write_order(&mut tx, 7).await;
    let pending = notifier
        .notify_in(
            &mut tx,
            Audience::user(UserId::new(user)),
            &OrderShipped { order: 7 },
        )
        .await
        .expect("stage");
    tx.commit().await.expect("commit");
    std::fs::write(&marker, pending.ids()[0].to_string()).expect("marker");
    // Killed here, before `pending.publish()`.
    tokio::time::sleep(Duration::from_secs(120)).await;
    drop(pending);
}

on_both!(
    a_send_killed_after_commit_is_published_after_restart,
    killed
);
async fn killed(backend: Backend) {
    let server = TestServer::start_on(backend, &[]).await;
    let bob = server.signup("bob").await;
    let bob_id = user_id(&bob).await;
    // The server is down while the other process commits and dies, so
    // nothing but the restarted server can publish the row.
    let kept = server.stop_keeping_data().await;
    let marker = std::env::temp_dir().join(format!("outbox-child-{}", uuid::Uuid::new_v4()));
    let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "inbox::outbox_child", "--ignored", "--nocapture"])
        .envs(&kept.env)
        .env(CHILD_USER, &bob_id)
        .env(CHILD_MARKER, &marker)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the child");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let id: i64 = loop {
        if let Ok(text) = std::fs::read_to_string(&marker)
            && let Ok(id) = text.parse()
        {
            break id;
        }
        assert!(std::time::Instant::now() < deadline, "the child committed");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the child exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    child.kill().expect("SIGKILL the child");
    let _ = child.wait();
    let _ = std::fs::remove_file(&marker);
    let db = database_of(&kept.env).await;
    let published: Option<i64> =
        sqlx::query("SELECT published_at FROM notifications WHERE id = $1")
            .bind(id)
            .fetch_one(db.pool())
            .await
            .expect("the committed row")
            .get(0);
    assert_eq!(published, None, "committed, not published");
    db.pool().close().await;

    let server = TestServer::restart(kept).await;
    let bob = server.login("bob").await;
    let (mut stream, _) = bob.open("").await;
    assert_eq!(
        stream.backlog.inbox_ids(),
        vec![id],
        "delivered after the restart"
    );
    assert_eq!(stream.backlog.events[0].1, "order-shipped");
    // Not again: the relay (every second) finds nothing left.
    let again = stream.next_with_id(Duration::from_millis(2500)).await;
    assert!(again.is_none(), "delivered once: {again:?}");
    let published: Option<i64> =
        sqlx::query("SELECT published_at FROM notifications WHERE id = $1")
            .bind(id)
            .fetch_one(server.db().await.pool())
            .await
            .expect("the row")
            .get(0);
    assert!(published.is_some(), "claimed by the relay");
    drop(stream);
    server.shutdown().await.expect("clean shutdown");
}

on_both!(the_per_user_cap_drops_read_ones_first, cap);
async fn cap(backend: Backend) {
    let server = TestServer::start_on(backend, &[("INBOX_MAX_PER_USER", "5")]).await;
    let ann = server.signup("ann").await;
    let bob = server.signup("bob").await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(notify(&ann, "bob", &format!("{n}")).await);
    }
    let (status, _) = bob
        .post_json(
            "/api/inbox/read",
            &json!({ "ids": [ids[0], ids[1]] }).to_string(),
        )
        .await;
    assert_eq!(status, 200);
    for n in 3..7 {
        ids.push(notify(&ann, "bob", &format!("{n}")).await);
    }
    // Seven sent, five kept: the two read ones went.
    assert_eq!(
        listed(&bob).await,
        ids[2..].iter().rev().copied().collect::<Vec<_>>()
    );
    // Over the cap with nothing read: the oldest unread goes; the send
    // itself never fails.
    ids.push(notify(&ann, "bob", "7").await);
    assert_eq!(
        listed(&bob).await,
        ids[3..].iter().rev().copied().collect::<Vec<_>>()
    );
    let (mut stream, _) = bob.open("").await;
    assert_eq!(stream.backlog.unread, 5);
    assert!(
        stream
            .next_with_id(Duration::from_millis(100))
            .await
            .is_none()
    );
    drop(stream);

    // A broadcast Bob read stays read however many sends push him over
    // the cap: his read mark is not one of the rows the cap drops.
    server.grant_admin("ann");
    let boss = server.login("ann").await;
    let (status, answer) = boss
        .post_json("/api/sse/broadcast", r#"{"message":"to all"}"#)
        .await;
    assert_eq!(status, 200, "{answer}");
    let broadcast = answer["id"].as_i64().expect("stored");
    let (status, _) = bob
        .post_json(
            "/api/inbox/read",
            &json!({ "ids": [broadcast] }).to_string(),
        )
        .await;
    assert_eq!(status, 200);
    for n in 0..6 {
        notify(&ann, "bob", &format!("more {n}")).await;
    }
    let (_, count) = bob.post_json("/api/inbox/unread", "{}").await;
    assert_eq!(count["unread"], 5, "five direct, the broadcast still read");
    server.shutdown().await.expect("clean shutdown");
}

async fn listed(user: &User) -> Vec<i64> {
    let (status, page) = user.post_json("/api/inbox/list", r#"{"limit":100}"#).await;
    assert_eq!(status, 200, "{page}");
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["id"].as_i64().expect("id"))
        .collect()
}

on_both!(retention_deletes_old_notifications, retention);
async fn retention(backend: Backend) {
    let server = TestServer::start_on(
        backend,
        &[
            ("INBOX_RETENTION", "1500ms"),
            ("INBOX_SWEEP_INTERVAL", "200ms"),
        ],
    )
    .await;
    let ann = server.signup("ann").await;
    let bob = server.signup("bob").await;
    notify(&ann, "bob", "old").await;
    notify(&ann, "bob", "old too").await;
    assert_eq!(listed(&bob).await.len(), 2);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(listed(&bob).await.is_empty(), "swept");
    let rows: i64 = sqlx::query("SELECT COUNT(*) FROM notifications")
        .fetch_one(server.db().await.pool())
        .await
        .expect("count")
        .get(0);
    assert_eq!(rows, 0);
    let fresh = notify(&ann, "bob", "new").await;
    assert_eq!(listed(&bob).await, vec![fresh]);
    server.shutdown().await.expect("clean shutdown");
}

on_both!(bad_input_is_refused_and_changes_nothing, bad_input);
async fn bad_input(backend: Backend) {
    let server = TestServer::start_on(backend, &[]).await;
    let ann = server.signup("ann").await;
    let bob = server.signup("bob").await;
    let for_ann = notify(&bob, "ann", "for ann").await;
    let for_bob = notify(&ann, "bob", "for bob").await;

    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "/api/inbox/read",
            json!({ "ids": [999_999] }).to_string(),
            404,
            "unknown_notifications",
        ),
        (
            "/api/inbox/read",
            json!({ "ids": [for_ann] }).to_string(),
            404,
            "unknown_notifications",
        ),
        (
            "/api/inbox/read",
            json!({ "ids": [for_bob, for_ann] }).to_string(),
            404,
            "unknown_notifications",
        ),
        (
            "/api/inbox/read",
            json!({ "ids": [] }).to_string(),
            400,
            "bad_ids",
        ),
        (
            "/api/inbox/read",
            json!({ "ids": [-3] }).to_string(),
            400,
            "bad_ids",
        ),
        (
            "/api/inbox/read",
            json!({ "ids": (1..=501).collect::<Vec<i64>>() }).to_string(),
            400,
            "bad_ids",
        ),
        (
            "/api/inbox/list",
            json!({ "limit": 100_000 }).to_string(),
            400,
            "bad_limit",
        ),
        (
            "/api/inbox/list",
            json!({ "limit": 0 }).to_string(),
            400,
            "bad_limit",
        ),
        (
            "/api/inbox/list",
            json!({ "before": 0 }).to_string(),
            400,
            "bad_ids",
        ),
        (
            "/api/inbox/read-all",
            json!({ "upto": -1 }).to_string(),
            400,
            "bad_ids",
        ),
    ];
    for (path, body, status, code) in cases {
        let (got, answer) = bob.post_json(path, &body).await;
        assert_eq!(got, status, "{path} {body}: {answer}");
        assert_eq!(answer["error"], code, "{path} {body}: {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Nothing changed: both still unread, each for its own user.
    let (_, count) = bob.post_json("/api/inbox/unread", "{}").await;
    assert_eq!(count["unread"], 1);
    let (_, count) = ann.post_json("/api/inbox/unread", "{}").await;
    assert_eq!(count["unread"], 1);
    // Signed out: 401, JSON.
    let stranger = server.browser();
    let response = stranger
        .post(server.url("/api/inbox/unread"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 401);
    let answer: Value = response.json().await.expect("JSON");
    assert_eq!(answer["error"], "unauthenticated");
    server.shutdown().await.expect("clean shutdown");
}

/// Every notification `user` lists, newest first, with whether it is read.
async fn listed_all(user: &User) -> Vec<(i64, bool)> {
    let mut all = Vec::new();
    let mut before = Value::Null;
    loop {
        let body = json!({ "before": before, "limit": 100 }).to_string();
        let (status, page) = user.post_json("/api/inbox/list", &body).await;
        assert_eq!(status, 200, "{page}");
        for item in page["items"].as_array().expect("items") {
            all.push((item["id"].as_i64().expect("id"), !item["readAt"].is_null()));
        }
        before = page["nextBefore"].clone();
        if before.is_null() {
            return all;
        }
    }
}

/// How many of `user`'s stored rows each sender's sends make up (by the
/// `from` of the demo's payload).
async fn rows_by_sender(server: &TestServer, user: &User) -> HashMap<String, usize> {
    let mut by = HashMap::new();
    let (mut before, id) = (Value::Null, user_id(user).await);
    let db = server.db().await;
    loop {
        let body = json!({ "before": before, "limit": 100 }).to_string();
        let (_, page) = user.post_json("/api/inbox/list", &body).await;
        for item in page["items"].as_array().expect("items") {
            let payload: Value =
                serde_json::from_str(item["payload"].as_str().expect("payload")).expect("JSON");
            let from = payload["from"].as_str().unwrap_or("").to_string();
            *by.entry(from).or_insert(0) += 1;
        }
        before = page["nextBefore"].clone();
        if before.is_null() {
            break;
        }
    }
    let stored: i64 = sqlx::query("SELECT COUNT(*) FROM inbox WHERE user_id = $1")
        .bind(&id)
        .fetch_one(db.pool())
        .await
        .expect("count")
        .get(0);
    assert_eq!(stored as usize, by.values().sum::<usize>(), "rows = listed");
    db.pool().close().await;
    by
}

/// Checks that `user` still lists every one of `own`, read exactly when
/// `read` says so.
async fn assert_own_rows_kept(user: &User, own: &[i64], read: &[i64], when: &str) {
    let rows: HashMap<i64, bool> = listed_all(user).await.into_iter().collect();
    for id in own {
        assert_eq!(
            rows.get(id),
            Some(&read.contains(id)),
            "{when}: the victim's own notification {id} is listed with its read state \
             (listed: {} rows)",
            rows.len()
        );
    }
}

on_both!(a_flood_from_other_accounts_evicts_only_their_rows, flood);
async fn flood(backend: Backend) {
    const FLOODERS: usize = 4;
    const EACH: usize = 250;
    let server = TestServer::start_on(backend, &[("INBOX_MAX_PER_USER", "200")]).await;
    let vic = server.signup("vic").await;
    let ann = server.signup("ann").await;
    // The victim's own five: three from a friend, two she sent herself;
    // two of them read.
    let mut own = Vec::new();
    for n in 0..3 {
        own.push(notify(&ann, "vic", &format!("from ann {n}")).await);
    }
    for n in 0..2 {
        own.push(notify(&vic, "vic", &format!("note to self {n}")).await);
    }
    let read = vec![own[0], own[3]];
    let (status, answer) = vic
        .post_json("/api/inbox/read", &json!({ "ids": read }).to_string())
        .await;
    assert_eq!(status, 200, "{answer}");

    // Four other accounts send 250 each, all at once: 1 000 rows for a
    // cap of 200.
    let mut floods = Vec::new();
    for f in 0..FLOODERS {
        let flooder = server.signup(&format!("flood{f}")).await;
        floods.push(tokio::spawn(async move {
            for n in 0..EACH {
                notify(&flooder, "vic", &format!("spam {n}")).await;
            }
        }));
    }
    for flood in floods {
        flood.await.expect("flooder");
    }
    assert_own_rows_kept(&vic, &own, &read, "after the flood").await;
    let by = rows_by_sender(&server, &vic).await;
    assert_eq!(by.values().sum::<usize>(), 200, "the cap holds: {by:?}");
    assert_eq!(by.get("ann"), Some(&3), "{by:?}");
    assert_eq!(by.get("vic"), Some(&2), "{by:?}");
    for f in 0..FLOODERS {
        let kept = by.get(&format!("flood{f}")).copied().unwrap_or(0);
        assert!(
            (48..=49).contains(&kept),
            "the flooders share the other 195 evenly: {by:?}"
        );
    }

    // The sweep applies the same rule: restarted with a lower cap, the
    // flooders' rows go and the victim's own stay.
    let mut kept = server.stop_keeping_data().await;
    kept.env
        .insert("INBOX_MAX_PER_USER".to_string(), "100".to_string());
    kept.env
        .insert("INBOX_SWEEP_INTERVAL".to_string(), "200ms".to_string());
    let server = TestServer::restart(kept).await;
    let vic = server.login("vic").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_own_rows_kept(&vic, &own, &read, "after the sweep").await;
    let by = rows_by_sender(&server, &vic).await;
    assert_eq!(by.values().sum::<usize>(), 100, "swept to the cap: {by:?}");
    for f in 0..FLOODERS {
        let kept = by.get(&format!("flood{f}")).copied().unwrap_or(0);
        assert!((23..=24).contains(&kept), "95 rows shared by 4: {by:?}");
    }
    server.shutdown().await.expect("clean shutdown");
}

on_both!(read_all_answers_only_the_callers_own_ids, read_all_own);
async fn read_all_own(backend: Backend) {
    let server = TestServer::start_on(backend, &[]).await;
    let ann = server.signup("ann").await;
    let bob = server.signup("bob").await;
    let cat = server.signup("cat").await;
    let bobs = [
        notify(&ann, "bob", "one").await,
        notify(&ann, "bob", "two").await,
    ];
    // Newer ones for someone else.
    let cats = [
        notify(&ann, "cat", "three").await,
        notify(&ann, "cat", "four").await,
    ];
    assert!(cats[0] > bobs[1]);
    let (mut tab, _) = bob.open("").await;
    let (status, answer) = bob.post_json("/api/inbox/read-all", "{}").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["unread"], 0);
    assert_eq!(
        answer["readUpto"],
        json!(bobs[1]),
        "Bob's own newest, not Cat's {}",
        cats[1]
    );
    assert_eq!(next_summary(&mut tab).await["readUpto"], json!(bobs[1]));
    // An `upto` beyond Bob's own is answered with Bob's own newest too.
    let (status, answer) = bob
        .post_json(
            "/api/inbox/read-all",
            &json!({ "upto": cats[1] }).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["readUpto"], json!(bobs[1]), "{answer}");
    // Nothing of Cat's changed.
    let (_, count) = cat.post_json("/api/inbox/unread", "{}").await;
    assert_eq!(count["unread"], 2);
    drop(tab);
    server.shutdown().await.expect("clean shutdown");
}
