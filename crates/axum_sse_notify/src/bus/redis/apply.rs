//! One entry read back from Redis, applied to this process: delivered,
//! a kick carried out, a gap told. Shared by both reads (the whole stream,
//! [`super::read`]; a process's own clients', [`super::subscribe`]), so
//! that they treat every entry alike.

use super::BusState;
use super::read::skipped;
use super::reply::Entry;
use crate::bus::wire::{self, Incoming};
use crate::event_id::EventId;
use crate::registry::DisconnectReason;
use crate::target::Target;

/// Applies `entry` (the next after `cursor`, in the stream's order) and
/// moves the cursor to it. An event whose target `wanted` refuses is
/// stepped over (nobody here is it for: read back only because a
/// catch-up reads every entry).
pub(super) fn apply(
    state: &BusState,
    cursor: &mut Option<EventId>,
    entry: Entry,
    wanted: &(dyn Fn(&Target) -> bool + Sync),
) {
    let registry = &state.registry;
    if let Some(metrics) = registry.metrics() {
        metrics.bus_entry_read();
    }
    let Some(epoch) = entry.epoch else {
        // Not ours (written by something else, or damaged): read past it,
        // or every later read would return it again.
        if let Some(current) = cursor.as_mut() {
            current.position = entry.position;
        }
        skipped(state, entry.position);
        return;
    };
    let id = EventId {
        epoch,
        position: entry.position,
    };
    if cursor.map(|c| c.epoch) != Some(epoch) {
        // Deleted and started again under us.
        tracing::warn!("bus: the stream was replaced");
        registry.restart_history(
            state.partition,
            EventId {
                epoch,
                position: entry.position.before(),
            },
            Vec::new(),
        );
    }
    *cursor = Some(id);
    let origin = wire::origin(&entry.fields);
    if state.is_copy(origin) {
        tracing::debug!(%id, "bus: dropped a copy appended again after a retry");
        return;
    }
    match wire::decode(&entry.fields) {
        Some(Incoming::Event {
            target,
            event,
            inbox,
        }) => {
            if wanted(&target) {
                registry.deliver(state.partition, id, &target, &event, inbox);
            }
        }
        Some(Incoming::Kick { target }) => {
            registry.disconnect_matching(&target, DisconnectReason::Kicked);
        }
        Some(Incoming::Gap) if origin.is_some_and(|o| o.publisher == state.publisher) => {
            // Our own: our clients were told when we left the stream and
            // when we came back; resumes from before it must be told too.
            registry.forget_before(state.partition, id);
        }
        Some(Incoming::Gap) => {
            // Another process sent to its own clients only while Redis was
            // out of its reach: ours may have missed some.
            tracing::warn!(%id, "bus: another process could not publish for a while; clients are told");
            registry.restart_history(state.partition, id, Vec::new());
        }
        Some(Incoming::Marker) => {}
        None => skipped(state, entry.position),
    }
}
