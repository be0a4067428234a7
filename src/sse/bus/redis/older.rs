//! Resumes from before what this process's history holds: the older
//! entries are read from the stream itself (`XRANGE`), when it still has
//! them (the stream is bounded by length only, the history also by age
//! and bytes).

use bytes::{Bytes, BytesMut};
use redis::Value;

use super::reply::{self, entry_id};
use super::seen::Seen;
use super::{Shared, timed_out};
use crate::sse::bus::wire::{self, Incoming};
use crate::sse::event_id::{EventId, Position};
use crate::sse::registry::frame;
use crate::sse::target::Recipient;

/// The frames `recipient` should have received after `after` up to
/// `upto` (inclusive), or `None` when the stream cannot prove it still
/// holds all of them (the entry at `after` is gone, a gap or another
/// history lies between, more than `history_len` entries) or Redis does
/// not answer in time.
pub(super) async fn read(
    shared: &Shared,
    after: EventId,
    upto: Position,
    recipient: &Recipient<'_>,
) -> Option<Bytes> {
    let limit = shared.config.history_len.max(1) + 1;
    let _permit = tokio::time::timeout(shared.config.timeout, shared.older_reads.acquire())
        .await
        .ok()?
        .ok()?;
    let mut conn = shared.connect(true).await.ok()?;
    let cmd = redis::cmd("XRANGE")
        .arg(&shared.keys.stream)
        .arg(entry_id(after.position))
        .arg(entry_id(upto))
        .arg("COUNT")
        .arg(limit)
        .clone();
    let reply: Value = tokio::time::timeout(shared.config.timeout, cmd.query_async(&mut conn))
        .await
        .map_err(|_| timed_out())
        .ok()?
        .ok()?;
    let (entries, unreadable) = reply::entries(&reply);
    let continuous = entries
        .first()
        .is_some_and(|e| e.position == after.position)
        && entries.len() < limit
        && unreadable == 0
        && entries.iter().all(|e| e.epoch == Some(after.epoch));
    if !continuous {
        return None;
    }
    let mut seen = Seen::default();
    let mut out = BytesMut::new();
    for entry in &entries[1..] {
        if seen.is_copy(wire::origin(&entry.fields)) {
            continue;
        }
        match wire::decode(&entry.fields) {
            Some(Incoming::Event {
                target,
                event,
                inbox,
            }) if target.selects(recipient) => {
                let id = EventId {
                    epoch: after.epoch,
                    position: entry.position,
                };
                out.extend_from_slice(&frame(id, &event, inbox));
            }
            Some(Incoming::Gap) => return None,
            _ => {}
        }
    }
    Some(out.freeze())
}
