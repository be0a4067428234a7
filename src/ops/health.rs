//! `GET /healthz` (the process answers) and `GET /readyz` (it should be
//! sent traffic: the database answers, the bus is connected when there is
//! one, and it is not draining).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Ops;
use super::db_timing::{DbOp, timed};

/// A database that has not answered `SELECT 1` within this long counts
/// as down: a probe must answer faster than the balancer's timeout.
const DB_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Alive: the process answers HTTP. Nothing else is checked, so that a
/// restart is never triggered by a dependency being down.
pub async fn healthz() -> Response {
    no_store((StatusCode::OK, "ok\n").into_response())
}

/// Ready: 200 with each check's result, or 503 naming what failed.
pub async fn readyz(State(ops): State<Ops>) -> Response {
    let draining = ops.is_draining();
    // Draining answers at once: the balancer must see it now, whatever
    // the database does.
    let database = if draining {
        Ok(())
    } else {
        check_database(&ops).await
    };
    let bus = ops.notifier().bus_status();
    let bus_check = match (bus.kind, bus.connected) {
        ("local", _) => "ok (in-process)".to_string(),
        (_, true) => "ok".to_string(),
        (_, false) => "disconnected: Redis is unreachable".to_string(),
    };
    let mut failing = Vec::new();
    if draining {
        failing.push("draining");
    }
    if database.is_err() {
        failing.push("database");
    }
    if !bus.connected {
        failing.push("bus");
    }
    let body = json!({
        "ready": failing.is_empty(),
        "failing": failing,
        "checks": {
            "database": match (draining, database) {
                (true, _) => "not checked (draining)".to_string(),
                (false, Ok(())) => "ok".to_string(),
                (false, Err(e)) => e,
            },
            "bus": bus_check,
            "draining": draining,
        },
    });
    let status = if failing.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    no_store((status, Json(body)).into_response())
}

/// How long one database check answers every probe: a flood of
/// `/readyz` costs one query per this long, not one each, and takes no
/// connections the app needs.
const DB_CHECK_REUSE: Duration = Duration::from_millis(500);

/// The last check's result, if recent; otherwise one check (concurrent
/// probes wait for it rather than each querying).
async fn check_database(ops: &Ops) -> Result<(), String> {
    let mut last = ops.db_check().lock().await;
    if let Some((at, result)) = last.as_ref()
        && at.elapsed() < DB_CHECK_REUSE
    {
        return result.clone();
    }
    // Spawned: a probe that gives up while holding the lock must not
    // lose the answer for the ones waiting behind it.
    let query = tokio::spawn({
        let ops = ops.clone();
        async move { query_database(&ops).await }
    });
    let result = query
        .await
        .unwrap_or_else(|e| Err(format!("the check failed: {e}")));
    *last = Some((std::time::Instant::now(), result.clone()));
    result
}

async fn query_database(ops: &Ops) -> Result<(), String> {
    let metrics = ops.timings();
    let ping = sqlx::query("SELECT 1").execute(ops.pool());
    match tokio::time::timeout(DB_CHECK_TIMEOUT, timed(metrics, DbOp::Ping, ping)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("error: {e}")),
        Err(_) => Err(format!("no answer within {DB_CHECK_TIMEOUT:?}")),
    }
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
