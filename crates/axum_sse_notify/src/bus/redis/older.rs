//! Resumes from before what this process's history holds: the older
//! entries are read from the stream itself (`XRANGE`), when it still has
//! them (the stream is bounded by length only, the history also by age
//! and bytes).
//!
//! The read is paged and bounded like the history: by entries
//! (`sse.history_len`) and by bytes (`sse.history_max_bytes`). Its first
//! page is two entries, so a resume the stream cannot continue (the
//! client's entry is gone, a made-up id, another history) costs Redis
//! one or two entries, not the stream.

use bytes::{Bytes, BytesMut};
use redis::Value;

use super::reply::{self, entry_id};
use super::seen::Seen;
use super::{BusState, timed_out};
use crate::bus::wire::{self, Incoming};
use crate::event_id::{EventId, Position, StreamId};
use crate::registry::frame;
use crate::target::Recipient;

/// Entries per page after the first, at most: small enough that a page
/// past the byte bound costs little, large enough for few round trips.
const PAGE: usize = 64;

/// The frames `recipient` should have received after `after` up to
/// `upto` (inclusive), or `None` when the stream cannot prove it still
/// holds all of them (the entry at `after` is gone, a gap or another
/// history lies between), when they are more than the history would
/// hold (the stream's `history_len` entries, `history_max_bytes` bytes),
/// when the first
/// of them was appended before `since` (unix ms: the sign-in began
/// later), or when Redis does not answer in time.
pub(super) async fn read(
    state: &BusState,
    after: EventId,
    upto: Position,
    recipient: &Recipient<'_>,
    since: Option<u64>,
) -> Option<Bytes> {
    // The stream's own length bound (`XADD MAXLEN`), and the history's
    // byte bound: no more than this process would hold for replay itself.
    let max_entries = state.config.history_len.max(1);
    let max_bytes = state.registry.config().history_max_bytes;
    // One bound for the whole read, pages included: a permit is never
    // held longer than `bus.timeout`.
    let deadline = tokio::time::Instant::now() + state.config.timeout;
    let _permit = tokio::time::timeout_at(deadline, state.older_reads.acquire())
        .await
        .ok()?
        .ok()?;
    let mut conn = tokio::time::timeout_at(deadline, state.connect(true))
        .await
        .ok()?
        .ok()?;
    let mut seen = Seen::default();
    let mut out = BytesMut::new();
    let (mut entries_read, mut bytes_read) = (0usize, 0usize);
    // Inclusive on the first page (the client's own entry proves the
    // stream is continuous from it), exclusive after.
    let mut from = entry_id(after.position);
    let mut count = 2;
    let mut first_page = true;
    let mut first_event = true;
    loop {
        let cmd = redis::cmd("XRANGE")
            .arg(&state.keys.stream)
            .arg(&from)
            .arg(entry_id(upto))
            .arg("COUNT")
            .arg(count)
            .clone();
        let reply: Value = tokio::time::timeout_at(deadline, cmd.query_async(&mut conn))
            .await
            .map_err(|_| timed_out())
            .ok()?
            .ok()?;
        let (entries, unreadable) = reply::entries(&reply);
        // Another history in between: no continuity. An entry without one
        // (foreign, damaged) is stepped over, as the reader does.
        let other_history = entries
            .iter()
            .any(|e| e.epoch.is_some_and(|epoch| epoch != after.epoch));
        if unreadable > 0 || other_history {
            return None;
        }
        let mut page = entries.as_slice();
        if first_page {
            let (own, rest) = page.split_first()?;
            if own.position != after.position || own.epoch.is_none() {
                return None;
            }
            page = rest;
        }
        for entry in page {
            entries_read += 1;
            bytes_read += entry
                .fields
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
            if entries_read > max_entries || bytes_read > max_bytes {
                return None;
            }
            // Without an epoch: foreign or damaged, stepped over.
            if entry.epoch.is_none() || seen.is_copy(wire::origin(&entry.fields)) {
                continue;
            }
            match wire::decode(&entry.fields) {
                Some(Incoming::Event {
                    target,
                    event,
                    inbox,
                }) => {
                    // The first event after the client's was appended
                    // (Redis's clock, ms) before the sign-in began: the
                    // resume reaches back too far.
                    if first_event && since.is_some_and(|since| entry.position.major < since) {
                        return None;
                    }
                    first_event = false;
                    if target.selects(recipient) {
                        let id = EventId {
                            epoch: after.epoch,
                            position: entry.position,
                        };
                        // No inbox position: where the stream stood in
                        // the publish order at this entry is not known
                        // here, and a wrong one would skip or repeat
                        // (such a frame resumes from the history only).
                        let id = StreamId::new(id, None).with_inbox(inbox.map(|s| s.id));
                        out.extend_from_slice(&frame(id, &event));
                    }
                }
                Some(Incoming::Gap) => return None,
                _ => {}
            }
        }
        let Some(last) = entries.last().filter(|_| entries.len() == count) else {
            return Some(out.freeze());
        };
        from = format!("({}", entry_id(last.position));
        count = PAGE;
        first_page = false;
    }
}

/// The id of the stream's newest entry (only the id: a script, so that
/// Redis does not send the entry), or `None` if the stream is empty or
/// Redis does not answer in time.
pub(super) async fn newest(state: &BusState) -> Option<Position> {
    const NEWEST: &str = "local e = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1) \
                          if e[1] then return e[1][1] end return false";
    let _permit = tokio::time::timeout(state.config.timeout, state.newest_reads.acquire())
        .await
        .ok()?
        .ok()?;
    let mut conn = state.connect(true).await.ok()?;
    let script = redis::Script::new(NEWEST);
    let mut invocation = script.prepare_invoke();
    invocation.key(&state.keys.stream);
    let id: Option<String> =
        tokio::time::timeout(state.config.timeout, invocation.invoke_async(&mut conn))
            .await
            .ok()?
            .ok()?;
    reply::position(&id?)
}
