//! Sessions ended anywhere, told to every process (partitioned bus).
//!
//! With one partition every process reads every kick from the one
//! stream. With several, a process reads only the partitions its streams
//! stand in, yet a session signed out elsewhere must be refused here too
//! (a request of it may be on its way), and forgotten by what the app
//! remembers of it ([`crate::Registry::on_session_end`], e.g. a cache of
//! who a session is). So each session kick is also appended to one small
//! capped stream, which every process's cluster task reads at each report
//! interval, applying the others' kicks as its own. Kicks are rare (a
//! sign-out each), so every process reading all of them costs nothing
//! that grows with the events.

use std::collections::VecDeque;
use std::sync::PoisonError;

use redis::Value;
use redis::aio::MultiplexedConnection;

use super::reply::{self, entry_id};
use super::{BusState, timed_out};
use crate::event_id::Position;
use crate::registry::DisconnectReason;
use crate::target::{SessionId, Target};

/// Entries the stream keeps (`MAXLEN ~`): far more sign-outs than one
/// report interval holds.
const KEPT: usize = 10_000;

/// Ended sessions waiting to be written, at most; past it the oldest is
/// dropped (its streams here and in the followed partitions were ended
/// at once anyway).
const WAITING_MAX: usize = 10_000;

/// Entries read (and written) per round trip, at most.
const READ_MAX: usize = 1000;

/// Round trips per exchange, at most: a burst of sign-outs is caught up
/// within one report interval up to this many pages, the rest at the next.
const ROUNDS_MAX: usize = 16;

/// How far before its start a process reads sign-outs.
const CLOCK_MARGIN_MS: u64 = 60_000;

/// Ended sessions to tell the others, and where this process stands in
/// what they told.
pub(super) struct Ended {
    waiting: VecDeque<SessionId>,
    /// The last entry read: at first, the process's start (what ended
    /// before, it never remembered; what ended since, even while Redis
    /// could not be reached, it applies).
    cursor: Position,
}

impl Ended {
    pub(super) fn since_now() -> Self {
        // Entry ids are Redis's clock, the start this process's: a margin
        // for the two to differ (a kick applied twice is harmless).
        let start = crate::clock::unix_millis_now().saturating_sub(CLOCK_MARGIN_MS);
        Ended {
            waiting: VecDeque::new(),
            cursor: Position::new(start, 0),
        }
    }

    pub(super) fn push(&mut self, session: SessionId) {
        if self.waiting.len() >= WAITING_MAX {
            tracing::warn!("bus: too many ended sessions waiting to be told; the oldest dropped");
            self.waiting.pop_front();
        }
        self.waiting.push_back(session);
    }
}

fn lock(state: &BusState) -> std::sync::MutexGuard<'_, Ended> {
    state.ended.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Writes the sessions ended here since the last exchange and applies
/// those ended elsewhere, a page per round trip, until caught up (or
/// [`ROUNDS_MAX`]).
pub(super) async fn exchange(
    state: &BusState,
    conn: &mut MultiplexedConnection,
) -> redis::RedisResult<()> {
    for _ in 0..ROUNDS_MAX {
        if !exchange_page(state, conn).await? {
            break;
        }
    }
    Ok(())
}

/// One round trip; whether there may be more (a full page either way).
async fn exchange_page(
    state: &BusState,
    conn: &mut MultiplexedConnection,
) -> redis::RedisResult<bool> {
    let (sending, cursor): (Vec<SessionId>, Position) = {
        let mut ended = lock(state);
        let n = ended.waiting.len().min(READ_MAX);
        (ended.waiting.drain(..n).collect(), ended.cursor)
    };
    let origin = state.publisher.to_string();
    let mut pipe = redis::pipe();
    for session in &sending {
        pipe.cmd("XADD")
            .arg(&state.keys.ended)
            .arg("MAXLEN")
            .arg("~")
            .arg(KEPT)
            .arg("*")
            .arg("s")
            .arg(session.as_str())
            .arg("o")
            .arg(&origin)
            .ignore();
    }
    pipe.cmd("XRANGE")
        .arg(&state.keys.ended)
        .arg(format!("({}", entry_id(cursor)))
        .arg("+")
        .arg("COUNT")
        .arg(READ_MAX);
    let reply = tokio::time::timeout(state.config.timeout, pipe.query_async::<Vec<Value>>(conn))
        .await
        .map_err(|_| timed_out())
        .and_then(|reply| reply);
    let reply = match reply {
        Ok(reply) => reply,
        Err(e) => {
            // Told at the next exchange (a kick twice is harmless).
            let mut ended = lock(state);
            for session in sending.into_iter().rev() {
                ended.waiting.push_front(session);
            }
            return Err(e);
        }
    };
    let (entries, _) = reply::entries(reply.first().unwrap_or(&Value::Nil));
    let more = entries.len() >= READ_MAX || sending.len() >= READ_MAX;
    if let Some(last) = entries.last() {
        lock(state).cursor = last.position;
    }
    for entry in entries {
        let field = |name: &[u8]| {
            entry
                .fields
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
        };
        if field(b"o") == Some(origin.as_str()) {
            continue;
        }
        if let Some(session) = field(b"s").filter(|s| !s.is_empty()) {
            state.registry.disconnect_matching(
                &Target::session(SessionId::new(session)),
                DisconnectReason::Kicked,
            );
        }
    }
    Ok(more)
}
