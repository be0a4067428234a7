//! The reader: follows the stream and delivers through the registry.
//!
//! On every (re)connect it first decides where to continue. If the stream
//! is the one it followed (same epoch) and still holds the last entry it
//! read, it continues right after it: nothing was missed, even if Redis
//! was out of reach for a while. Otherwise it follows the stream from its
//! newest entries (mirrored into the registry's history for replay) and
//! every connected client gets an `sse-reset`: what it missed while the
//! stream could not be followed cannot be told apart from what it saw.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::Value;
use redis::aio::MultiplexedConnection;

use super::apply::apply;
use super::publish::script;
use super::reply::{self, entry_id};
use super::{BusState, timed_out};
use crate::bus::backoff::Backoff;
use crate::bus::wire::{self, Incoming};
use crate::event_id::{Epoch, EventId, Position};
use crate::metrics::BusLink;
use crate::registry::DisconnectReason;

/// How long one `XREAD` waits for new entries; after a quiet wait the
/// reader checks that the stream is still the one it follows.
const BLOCK: Duration = Duration::from_secs(2);

/// Entries taken per read, at most.
const COUNT: usize = 1024;

pub(super) async fn run(state: Arc<BusState>) {
    let mut backoff = Backoff::new();
    // The last entry read (of any kind), in its history.
    let mut cursor: Option<EventId> = None;
    let mut connections = 0u64;
    loop {
        let mut followed = false;
        let session = async {
            let mut conn = state.connect(false).await?;
            sync(&state, &mut conn, &mut cursor, &|_| true).await?;
            state.reader_up.store(true, Ordering::Relaxed);
            state.reader_read.send_replace(true);
            followed = true;
            connections += 1;
            if connections > 1 {
                state.reconnected(BusLink::Reader);
            }
            tracing::info!("bus: following the stream");
            loop {
                follow(&state, &mut conn, &mut cursor).await?;
                // The stream changed identity while quiet: start over.
                sync(&state, &mut conn, &mut cursor, &|_| true).await?;
            }
        };
        let result: redis::RedisResult<()> = tokio::select! {
            result = session => result,
            () = state.stopped() => return,
        };
        state.reader_up.store(false, Ordering::Relaxed);
        if let Err(e) = result {
            tracing::warn!(error = %e, "bus: cannot follow the stream; reconnecting");
        }
        if followed {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = state.stopped() => return,
        }
    }
}

/// One command, bounded: `bus.timeout` beyond what it may block for.
pub(super) async fn query<T: redis::FromRedisValue>(
    state: &BusState,
    conn: &mut MultiplexedConnection,
    cmd: &redis::Cmd,
    blocks_for: Duration,
) -> redis::RedisResult<T> {
    tokio::time::timeout(blocks_for + state.config.timeout, cmd.query_async(conn))
        .await
        .map_err(|_| timed_out())?
}

pub(super) async fn current_epoch(
    state: &BusState,
    conn: &mut MultiplexedConnection,
) -> redis::RedisResult<Option<Epoch>> {
    let text: Option<String> = query(
        state,
        conn,
        redis::cmd("GET").arg(&state.keys.epoch),
        Duration::ZERO,
    )
    .await?;
    Ok(text.as_deref().and_then(Epoch::parse_hex))
}

/// Decides where to continue (see the module's doc); the newest events
/// mirrored are those `wanted` accepts. Returns whether it continues
/// right after the cursor (`false`: it started over from the newest).
pub(super) async fn sync(
    state: &BusState,
    conn: &mut MultiplexedConnection,
    cursor: &mut Option<EventId>,
    wanted: &(dyn Fn(&crate::target::Target) -> bool + Sync),
) -> redis::RedisResult<bool> {
    let epoch = match current_epoch(state, conn).await? {
        Some(epoch) => epoch,
        None => {
            // No history yet, or it was lost: open one now, so that every
            // process follows it before the first send.
            let script = script();
            let mut invocation = script.prepare_invoke();
            invocation
                .key(&state.keys.stream)
                .key(&state.keys.epoch)
                .arg(Epoch::random().to_hex())
                .arg(state.config.history_len.max(1))
                .arg("k")
                .arg("o");
            let opened = invocation.invoke_async::<String>(conn);
            tokio::time::timeout(state.config.timeout, opened)
                .await
                .map_err(|_| timed_out())??;
            current_epoch(state, conn).await?.ok_or_else(|| {
                redis::RedisError::from(std::io::Error::other(
                    "the stream's epoch key holds no epoch",
                ))
            })?
        }
    };
    let (_, following) = state.registry.history_head(state.partition);
    if let Some(last) = *cursor
        && last.epoch == epoch
        && following
    {
        let still_there: Value = query(
            state,
            conn,
            redis::cmd("XRANGE")
                .arg(&state.keys.stream)
                .arg(entry_id(last.position))
                .arg("+")
                .arg("COUNT")
                .arg(1),
            Duration::ZERO,
        )
        .await?;
        let (entries, _) = reply::entries(&still_there);
        if entries.first().is_some_and(|e| e.position == last.position) {
            return Ok(true);
        }
        tracing::warn!(
            "bus: the stream was trimmed past this process's position while it could not read it"
        );
    }
    let newest: Value = query(
        state,
        conn,
        redis::cmd("XREVRANGE")
            .arg(&state.keys.stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(state.config.history_len.max(1)),
        Duration::ZERO,
    )
    .await?;
    let (mut entries, _) = reply::entries(&newest);
    entries.reverse();
    let head = entries.last().map_or(Position::START, |e| e.position);
    // Kicks this process may not have applied: after its position if it
    // followed this stream, else all those still in it (a kick twice is
    // harmless).
    let after = cursor.filter(|c| c.epoch == epoch).map(|c| c.position);
    let mut recent = Vec::new();
    for entry in entries.iter().filter(|e| e.epoch == Some(epoch)) {
        if state.is_copy(wire::origin(&entry.fields)) {
            continue;
        }
        match wire::decode(&entry.fields) {
            Some(Incoming::Event {
                target,
                event,
                inbox,
            }) if wanted(&target) => recent.push((entry.position, target, event, inbox)),
            Some(Incoming::Kick { target }) if after.is_none_or(|p| entry.position > p) => {
                state
                    .registry
                    .disconnect_matching(&target, DisconnectReason::Kicked);
            }
            // Nothing before a gap can be replayed without one.
            Some(Incoming::Gap) => recent.clear(),
            _ => {}
        }
    }
    let from = recent.first().map_or(head, |(position, ..)| *position);
    tracing::info!(epoch = %epoch.to_hex(), mirrored = recent.len(), "bus: following the stream's history from its newest entries");
    state.registry.restart_history(
        state.partition,
        EventId {
            epoch,
            position: from,
        },
        recent,
    );
    *cursor = Some(EventId {
        epoch,
        position: head,
    });
    state.read_head.send_replace(*cursor);
    Ok(false)
}

/// Reads and delivers until the stream is found to be another one
/// (returns `Ok`: sync again) or Redis fails (`Err`).
async fn follow(
    state: &BusState,
    conn: &mut MultiplexedConnection,
    cursor: &mut Option<EventId>,
) -> redis::RedisResult<()> {
    loop {
        let Some(last) = *cursor else {
            return Ok(());
        };
        let reply: Value = query(
            state,
            conn,
            redis::cmd("XREAD")
                .arg("COUNT")
                .arg(COUNT)
                .arg("BLOCK")
                .arg(BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&state.keys.stream)
                .arg(entry_id(last.position)),
            BLOCK,
        )
        .await?;
        let (entries, unreadable) = reply::read_reply(&reply);
        if unreadable > 0 {
            tracing::warn!(unreadable, "bus: skipped stream entries it cannot read");
        }
        if entries.is_empty() {
            if current_epoch(state, conn).await? != Some(last.epoch) {
                tracing::warn!("bus: the stream was replaced");
                return Ok(());
            }
            continue;
        }
        for entry in entries {
            apply(state, cursor, entry, &|_| true);
        }
        state.read_head.send_replace(*cursor);
    }
}

/// Counts an entry the reader stepped over, and logs it (at most one
/// line per [`SKIP_LOG_EVERY`], with how many were skipped since).
pub(super) fn skipped(state: &BusState, position: Position) {
    if let Some(metrics) = state.registry.metrics() {
        metrics.bus_entry_skipped();
    }
    let mut log = state
        .skip_log
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    log.1 += 1;
    let now = std::time::Instant::now();
    if log
        .0
        .is_none_or(|at| now.duration_since(at) >= SKIP_LOG_EVERY)
    {
        tracing::warn!(entry = %entry_id(position), skipped = log.1,
            "bus: stepped over stream entries it cannot read (foreign or malformed)");
        *log = (Some(now), 0);
    }
}

/// The least time between two log lines about skipped entries.
const SKIP_LOG_EVERY: Duration = Duration::from_secs(10);
