//! What a stream that starts without a position gets first: an `inbox`
//! summary, then the user's newest unread notifications, oldest first.
//!
//! The switch-over to live events: the client is registered (its queue
//! fills with live events) before the unread rows are read. A
//! notification committed before the read and published after the
//! registration is in both; the stream drops the live copy, recognised by
//! its inbox id ([`Backlog::ids`]). One published before the registration
//! was committed before the read, so it is in the rows: never neither.

use bytes::Bytes;

use super::types::{InboxId, InboxSummary};
use super::{Inbox, InboxError};
use crate::sse::event::{EventName, write_frame};
use crate::sse::event_id::EventId;
use crate::sse::target::UserId;

/// The frames to write before live events, and the inbox ids they carry.
pub struct Backlog {
    pub frames: Bytes,
    pub ids: Vec<InboxId>,
}

impl Inbox {
    /// The backlog of a stream that starts at `start`: every frame has
    /// `start` as its position, so a reconnect resumes after it.
    pub async fn backlog(
        &self,
        user: &UserId,
        start: EventId,
        max: usize,
    ) -> Result<Backlog, InboxError> {
        let (items, unread) = self
            .inner
            .store
            .unread(user, max)
            .await
            .map_err(InboxError::store)?;
        let start = start.to_string();
        let mut out = Vec::new();
        let summary = InboxSummary {
            unread,
            ..InboxSummary::default()
        };
        let data = serde_json::to_string(&summary).unwrap_or_default();
        write_frame(
            &mut out,
            Some(&start),
            &EventName::reserved(InboxSummary::EVENT),
            &data,
        );
        let mut ids = Vec::with_capacity(items.len());
        for item in items {
            // A stored name that is no longer acceptable (e.g. reserved
            // since) is left in the inbox listing but not streamed.
            let Ok(name) = EventName::new(item.event) else {
                continue;
            };
            let id = format!("{start}:{}", item.id);
            write_frame(&mut out, Some(&id), &name, &item.payload);
            ids.push(item.id);
        }
        Ok(Backlog {
            frames: Bytes::from(out),
            ids,
        })
    }
}
