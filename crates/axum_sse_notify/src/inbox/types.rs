//! What the inbox's server functions and events carry: compiled for the
//! server and the browser.

use serde::{Deserialize, Serialize};

pub use crate::event_id::InboxId;

/// One stored notification as one user sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboxItem {
    pub id: InboxId,
    /// The event name it was sent under.
    pub event: String,
    /// The payload, as the JSON text that was sent.
    pub payload: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds; `None` while unread.
    pub read_at: Option<i64>,
    /// Sent to every user rather than to this one.
    pub broadcast: bool,
}

/// One page of a user's inbox, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboxPage {
    pub items: Vec<InboxItem>,
    /// Pass as `before` for the next (older) page; `None` at the end.
    pub next_before: Option<InboxId>,
    pub unread: u64,
}

/// The payload of the `inbox` event: sent first on a stream that starts
/// without `Last-Event-ID`, and to every stream of a user whose read
/// state changed (in another tab, on another device).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboxSummary {
    /// Unread notifications now.
    pub unread: u64,
    /// These were just marked read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read: Vec<InboxId>,
    /// Everything up to this id was just marked read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_upto: Option<InboxId>,
    /// On a stream's opening summary: how many of the unread (the newest)
    /// follow it as events. They are part of `unread`; the live ones
    /// after them are not yet.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replayed: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl InboxSummary {
    /// The reserved event name it is sent under.
    pub const EVENT: &'static str = "inbox";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inbox_id_is_the_part_after_the_colon() {
        assert_eq!(
            InboxId::from_event_id("3f9a0c5d2b7e1a44-12-0:981"),
            Some(InboxId(981))
        );
        assert_eq!(InboxId::from_event_id("3f9a0c5d2b7e1a44-12-0"), None);
        assert_eq!(InboxId::from_event_id("3f9a0c5d2b7e1a44-12-0:"), None);
        assert_eq!(InboxId::from_event_id("x:-4"), None);
        assert_eq!(InboxId::from_event_id("x:0"), None);
    }
}
