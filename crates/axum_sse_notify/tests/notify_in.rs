//! The inbox on an app's typed pool, and `notify_in` on the caller's own
//! typed transaction, on SQLite and on Postgres: a notification exists
//! exactly when the caller's own write does, reaches its user's stream
//! once (across a reconnect) and nobody else's. A real server on an
//! ephemeral port, a real SSE reader; no `AnyPool` anywhere.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{Next, from_fn};
use axum::response::Response;
use axum_sse_notify::{
    Audience, Identity, InboxConfig, InboxId, Notifier, SessionId, SseConfig, SseEvent, Target,
    UserId,
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sqlx::{Connection, PgPool, SqlitePool};

const WAIT: Duration = Duration::from_secs(10);
/// Transactions per run, of which every third rolls back.
const ORDERS: i64 = 30;

#[derive(Serialize, Deserialize)]
struct Shipped {
    order: i64,
}

impl SseEvent for Shipped {
    const NAME: &'static str = "shipped";
    const PERSISTENT: bool = true;
}

#[derive(Serialize, Deserialize)]
struct Marker;

impl SseEvent for Marker {
    const NAME: &'static str = "marker";
}

fn rolls_back(order: i64) -> bool {
    order % 3 == 0
}

/// The identity from an `x-user` header: enough for a test of delivery.
async fn identify(mut request: Request, next: Next) -> Response {
    let user = request
        .headers()
        .get("x-user")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(user) = user {
        request.extensions_mut().insert(Identity {
            user: UserId::new(user.clone()),
            username: user.clone(),
            session: SessionId::new(format!("session-of-{user}")),
            tags: Vec::new(),
            since: None,
        });
    }
    next.run(request).await
}

async fn serve(notifier: &Notifier) -> String {
    let app: Router = axum_sse_notify::routes()
        .layer(from_fn(identify))
        .with_state(notifier.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        let _ = axum::serve(listener, service).await;
    });
    format!("http://{addr}")
}

struct Frame {
    id: String,
    event: String,
    data: String,
}

struct Stream {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl Stream {
    async fn open(base: &str, user: &str, last_event_id: Option<&str>) -> Stream {
        let mut request = reqwest::Client::new()
            .get(format!("{base}/api/sse"))
            .header("x-user", user);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        Stream {
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    async fn next(&mut self) -> Frame {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    let mut frame = Frame {
                        id: String::new(),
                        event: "message".into(),
                        data: String::new(),
                    };
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("id: ") {
                            frame.id = v.to_string();
                        } else if let Some(v) = line.strip_prefix("event: ") {
                            frame.event = v.to_string();
                        } else if let Some(v) = line.strip_prefix("data: ") {
                            frame.data.push_str(v);
                        }
                    }
                    if !frame.data.is_empty() {
                        return frame;
                    }
                    continue;
                }
                let chunk = self.body.next().await.expect("stream ended").unwrap();
                self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        })
        .await
        .expect("no event in time")
    }

    /// The next `shipped` or `marker` event (the server's own skipped).
    async fn next_sent(&mut self) -> Frame {
        loop {
            let frame = self.next().await;
            if frame.event == "shipped" || frame.event == "marker" {
                return frame;
            }
        }
    }
}

/// One engine's typed pool, for the caller's transactions.
enum Typed {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Typed {
    async fn create_orders(&self) {
        let sql = "CREATE TABLE orders (id BIGINT PRIMARY KEY)";
        match self {
            Typed::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(drop),
            Typed::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(drop),
        }
        .unwrap();
    }

    async fn orders(&self) -> i64 {
        let sql = "SELECT COUNT(*) FROM orders";
        match self {
            Typed::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            Typed::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
        .unwrap()
    }

    /// The caller's own work: an order row and, in the same transaction,
    /// its notification; committed or rolled back, then published.
    /// Returns what `Pending::publish` reported and the staged id.
    async fn ship(&self, notifier: &Notifier, order: i64) -> (usize, InboxId) {
        let audience = Audience::user(UserId::new("ann"));
        let event = Shipped { order };
        // The same steps on each engine's own transaction type.
        macro_rules! in_transaction {
            ($pool:expr) => {{
                let mut tx = $pool.begin().await.unwrap();
                sqlx::query("INSERT INTO orders (id) VALUES ($1)")
                    .bind(order)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                let pending = notifier
                    .notify_in(&mut *tx, audience, &event)
                    .await
                    .unwrap();
                if rolls_back(order) {
                    tx.rollback().await.unwrap();
                } else {
                    tx.commit().await.unwrap();
                }
                pending
            }};
        }
        let pending = match self {
            Typed::Sqlite(pool) => in_transaction!(pool),
            Typed::Postgres(pool) => in_transaction!(pool),
        };
        let id = pending.ids()[0];
        (pending.publish().await.unwrap(), id)
    }
}

async fn run(typed: Typed) {
    match &typed {
        Typed::Sqlite(pool) => axum_sse_notify::inbox::schema::migrate_sqlite(pool).await,
        Typed::Postgres(pool) => axum_sse_notify::inbox::schema::migrate_postgres(pool).await,
    }
    .unwrap();
    typed.create_orders().await;
    // The inbox's own work on the app's pool. No maintenance: only
    // `publish` may publish (the relay would cover a forgotten one, which
    // is not what is tested here).
    let notifier = match &typed {
        Typed::Sqlite(pool) => {
            Notifier::with_inbox(SseConfig::default(), pool.clone(), InboxConfig::default())
        }
        Typed::Postgres(pool) => {
            Notifier::with_inbox(SseConfig::default(), pool.clone(), InboxConfig::default())
        }
    };
    let base = serve(&notifier).await;
    let mut ann = Stream::open(&base, "ann", None).await;
    let mut bob = Stream::open(&base, "bob", None).await;
    assert_eq!(ann.next().await.event, "connected");
    assert_eq!(bob.next().await.event, "connected");

    // Transactions from several tasks at once; ann's stream is dropped
    // and resumed with Last-Event-ID in the middle.
    let shipper = tokio::spawn({
        let notifier = notifier.clone();
        async move {
            let mut committed = Vec::new();
            let mut tasks = Vec::new();
            let typed = std::sync::Arc::new(typed);
            for order in 1..=ORDERS {
                let (typed, notifier) = (typed.clone(), notifier.clone());
                tasks.push(tokio::spawn(async move {
                    (order, typed.ship(&notifier, order).await)
                }));
            }
            // What each `publish` reports is not checked: on SQLite a
            // rolled-back transaction's id may be given to another's row,
            // which the first `publish` to claim it sends (once). What
            // reaches the stream is checked below.
            for task in tasks {
                let (order, (_, id)) = task.await.unwrap();
                if !rolls_back(order) {
                    committed.push((order, id));
                }
            }
            (committed, typed)
        }
    });
    let mut received = Vec::new();
    let mut last_id = String::new();
    while received.len() < 4 {
        let frame = ann.next_sent().await;
        last_id = frame.id.clone();
        received.push(frame);
    }
    drop(ann);
    let mut ann = Stream::open(&base, "ann", Some(&last_id)).await;
    let (committed, typed) = shipper.await.unwrap();
    let want = committed.len();
    while received.len() < want {
        received.push(ann.next_sent().await);
    }
    notifier.send(&Target::all(), &Marker).unwrap();
    assert_eq!(
        ann.next_sent().await.event,
        "marker",
        "ann received more than was committed"
    );
    assert_eq!(
        bob.next_sent().await.event,
        "marker",
        "bob received ann's notifications"
    );

    // Exactly the committed orders, each once, each with its row's id.
    let mut got: Vec<(i64, InboxId)> = received
        .iter()
        .map(|f| {
            assert_eq!(f.event, "shipped");
            let order = serde_json::from_str::<serde_json::Value>(&f.data).unwrap()["order"]
                .as_i64()
                .unwrap();
            (order, InboxId::from_event_id(&f.id).expect("an inbox id"))
        })
        .collect();
    got.sort_unstable();
    let mut want_pairs = committed.clone();
    want_pairs.sort_unstable();
    assert_eq!(got, want_pairs);
    assert_eq!(typed.orders().await, want as i64);
    let ann_id = UserId::new("ann");
    let page = notifier
        .inbox()
        .unwrap()
        .page(&ann_id, None, 100)
        .await
        .unwrap();
    assert_eq!(
        page.items.len(),
        want,
        "the inbox holds a rolled-back notification"
    );
    let bob_page = notifier
        .inbox()
        .unwrap()
        .page(&UserId::new("bob"), None, 100)
        .await
        .unwrap();
    assert!(bob_page.items.is_empty());
}

#[tokio::test]
async fn on_a_typed_sqlite_transaction() {
    let dir = std::env::temp_dir().join(format!("notify-in-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("app.db").display());
    let pool = SqlitePool::connect(&url).await.unwrap();
    run(Typed::Sqlite(pool)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn on_a_typed_postgres_transaction() {
    let admin = std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    let name = format!("notify_in_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("Postgres at {admin} (set TEST_POSTGRES_URL): {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    let url = format!("{base}/{name}");
    let pool = PgPool::connect(&url).await.unwrap();
    run(Typed::Postgres(pool.clone())).await;
    pool.close().await;
    let _ = sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await;
}
