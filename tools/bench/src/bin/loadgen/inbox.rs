//! `inbox`: persistent sends, in process (no HTTP), against a fresh
//! database (`--database sqlite` or a Postgres admin URL).
//!
//! - throughput: `--events` sends to distinct users from `--concurrency`
//!   tasks through the group-commit writer; sends per second;
//! - baseline: the same with `inbox.batch_max = 1` (one commit per send);
//! - floor: the same sends, live only (no store), through the registry;
//! - latency: `--rate` sends per second for `--duration` seconds, one user
//!   each; the time each send waits for its store step (queue, commit,
//!   publish), p50/p99/max;
//! - backlog: what a fresh stream's first read costs, for a user with 100
//!   unread (the default `sse.inbox_replay_max`): reads per second from 8
//!   tasks at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sse_notify::sse::{Audience, Event, InboxConfig, Notifier, SseConfig, Target, UserId};
use sse_notify::store::Db;

use crate::Args;

/// A fresh database: a temporary SQLite file, or a new database on the
/// Postgres server at `admin` (dropped afterwards).
struct Fresh {
    db: Db,
    dir: std::path::PathBuf,
    postgres: Option<(String, String)>,
}

impl Fresh {
    async fn create(database: &str) -> Result<Fresh, String> {
        use sqlx::Connection;
        let dir = std::env::temp_dir().join(format!("sse-notify-bench-{}", uuid::Uuid::new_v4()));
        let mut postgres = None;
        let url = if database == "sqlite" {
            None
        } else {
            let name = format!("sse_notify_bench_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(database)
                .await
                .map_err(|e| format!("{database}: {e}"))?;
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            let base = database.rsplit_once('/').map_or(database, |(b, _)| b);
            postgres = Some((database.to_string(), name.clone()));
            Some(format!("{base}/{name}"))
        };
        let db = Db::connect(url.as_deref(), &dir)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Fresh { db, dir, postgres })
    }

    async fn remove(self) {
        use sqlx::Connection;
        self.db.pool().close().await;
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some((admin, name)) = self.postgres
            && let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await
        {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await;
        }
    }
}

fn event(n: usize) -> Event {
    let payload = json!({
        "message": format!("Your order {n} has shipped"),
        "from": "shop",
        "sentAt": 1_764_700_000_000u64 + n as u64,
    });
    Event::new("notification", &payload).unwrap_or_else(|e| panic!("bench event: {e}"))
}

/// `events` persistent sends from `concurrency` tasks; sends per second.
async fn throughput(
    notifier: &Notifier,
    events: usize,
    concurrency: usize,
    store: bool,
) -> Result<f64, String> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let notifier = notifier.clone();
            let next = next.clone();
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= events {
                        return Ok::<(), String>(());
                    }
                    let user = UserId::new(format!("user{n}"));
                    if store {
                        notifier
                            .notify_event(Audience::user(user), event(n))
                            .await
                            .map_err(|e| e.to_string())?;
                    } else {
                        notifier
                            .send_event(&Target::user(user), &event(n))
                            .map_err(|e| e.to_string())?;
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok(events as f64 / started.elapsed().as_secs_f64())
}

/// `rate` sends per second for `duration`: each send's store step.
async fn latency(
    notifier: &Notifier,
    rate: u32,
    duration: Duration,
) -> Result<serde_json::Value, String> {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = (rate as u64 * duration.as_secs()) as usize;
    let mut tasks = Vec::with_capacity(total);
    for n in 0..total {
        tick.tick().await;
        let notifier = notifier.clone();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            notifier
                .notify_event(Audience::user(UserId::new(format!("late{n}"))), event(n))
                .await
                .map(|_| started.elapsed())
                .map_err(|e| e.to_string())
        }));
    }
    let mut micros = Vec::with_capacity(total);
    for task in tasks {
        micros.push(task.await.map_err(|e| e.to_string())??.as_micros() as u64);
    }
    micros.sort_unstable();
    let at =
        |q: f64| micros[((micros.len() as f64 * q) as usize).min(micros.len() - 1)] as f64 / 1000.0;
    Ok(json!({
        "rate": rate,
        "sends": total,
        "p50_ms": at(0.50),
        "p99_ms": at(0.99),
        "max_ms": at(1.0),
    }))
}

/// Fresh-stream backlog reads of 100 unread, 8 at a time, for 5 s.
async fn backlog(notifier: &Notifier) -> Result<serde_json::Value, String> {
    let user = UserId::new("reader");
    for n in 0..100 {
        notifier
            .notify_event(Audience::user(user.clone()), event(n))
            .await
            .map_err(|e| e.to_string())?;
    }
    let inbox = notifier.inbox().map_err(|e| e.to_string())?.clone();
    let start = notifier
        .registry()
        .register(
            &sse_notify::sse::Identity {
                user: user.clone(),
                username: "reader".into(),
                session: sse_notify::sse::SessionId::new("s"),
                tags: Vec::new(),
                since: None,
            },
            Vec::new(),
        )
        .map_err(|e| e.to_string())?
        .start_id();
    let until = Instant::now() + Duration::from_secs(5);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let inbox = inbox.clone();
            let user = user.clone();
            tokio::spawn(async move {
                let mut reads = 0u64;
                while Instant::now() < until {
                    let got = inbox
                        .backlog(&user, start, 100)
                        .await
                        .map_err(|e| e.to_string())?;
                    if got.ids.len() != 100 {
                        return Err(format!("read {} unread, not 100", got.ids.len()));
                    }
                    reads += 1;
                }
                Ok::<u64, String>(reads)
            })
        })
        .collect();
    let mut reads = 0;
    for task in tasks {
        reads += task.await.map_err(|e| e.to_string())??;
    }
    let per_second = reads as f64 / 5.0;
    Ok(json!({
        "unread": 100,
        "reads_per_second": per_second.round(),
        "micros_per_read": (1e6 / per_second).round(),
    }))
}

fn notifier(db: &Db, batch_max: usize) -> Notifier {
    let inbox = InboxConfig {
        batch_max,
        // Neither relay nor sweep runs here: the writer alone is measured.
        ..InboxConfig::default()
    };
    Notifier::with_inbox(SseConfig::default(), db.pool().clone(), inbox)
}

pub async fn inbox(a: &Args) -> Result<serde_json::Value, String> {
    let engine = if a.database == "sqlite" {
        "sqlite"
    } else {
        "postgres"
    };

    let fresh = Fresh::create(&a.database).await?;
    let group = throughput(
        &notifier(&fresh.db, InboxConfig::default().batch_max),
        a.events,
        a.concurrency,
        true,
    )
    .await?;
    fresh.remove().await;

    let fresh = Fresh::create(&a.database).await?;
    let single_events = (a.events / 10).max(1000);
    let single = throughput(&notifier(&fresh.db, 1), single_events, a.concurrency, true).await?;
    fresh.remove().await;

    let floor = throughput(
        &Notifier::new(SseConfig::default()),
        a.events,
        a.concurrency,
        false,
    )
    .await?;

    let fresh = Fresh::create(&a.database).await?;
    let late = latency(
        &notifier(&fresh.db, InboxConfig::default().batch_max),
        a.rate,
        Duration::from_secs(a.duration),
    )
    .await?;
    let reads = backlog(&notifier(&fresh.db, InboxConfig::default().batch_max)).await?;
    fresh.remove().await;

    Ok(json!({
        "engine": engine,
        "concurrency": a.concurrency,
        "group_commit": { "sends": a.events, "per_second": group.round() },
        "one_commit_per_send": { "sends": single_events, "per_second": single.round() },
        "live_only_floor": { "sends": a.events, "per_second": floor.round() },
        "store_latency": late,
        "backlog_100_unread": reads,
    }))
}
