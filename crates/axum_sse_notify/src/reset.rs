//! `sse-reset`: the stream could not replay everything its client missed.
//! Its data says why, from where the stream is complete, and, when the
//! client came back with an inbox position, that the stored notifications
//! it missed follow (so only events that were not stored may be missing,
//! and a page refetches only what those would have changed). Compiled for
//! the browser too (the hook and the demo read it).

use serde::{Deserialize, Serialize};

/// The data of an `sse-reset` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamReset {
    /// `unparsable_id`, `other_epoch` (a restart, or a lost shared
    /// stream), `too_old`, `history_lost`.
    pub reason: String,
    /// The id the stream is complete from (also the event's own id).
    pub since: String,
    /// Present when the stored part was resumed from the inbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<StoredResumed>,
}

/// How much of the stored part of a resume follows the reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResumed {
    /// Stored notifications that follow, in the order they were published.
    pub resumed: u64,
    /// Older ones left out: more were missed than `sse.inbox_replay_max`.
    pub skipped: u64,
}

impl StreamReset {
    pub const EVENT: &'static str = "sse-reset";

    /// Whether every stored notification the client missed follows: only
    /// events that were not stored may be missing.
    pub fn stored_complete(&self) -> bool {
        self.stored.is_some_and(|s| s.skipped == 0)
    }
}
