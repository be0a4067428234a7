//! The demo's channel policy: which client-chosen channels (`?tag=`) a
//! signed-in user's stream may join. `page:*` is free for everyone (the
//! page a tab shows); `room:<name>` only for users who joined that room
//! through `/home` (`rooms`); anything else is refused (403). Streams
//! opened with a stream token are decided by its claims instead.

use axum_sse_notify::{ChannelPolicy, Identity, Tag};
use futures::future::BoxFuture;

use crate::store::Db;

/// The demo's [`ChannelPolicy`], on the app's database.
#[derive(Clone)]
pub struct DemoChannels {
    db: Db,
}

impl DemoChannels {
    pub fn new(db: Db) -> Self {
        DemoChannels { db }
    }
}

impl ChannelPolicy for DemoChannels {
    fn allows<'a>(&'a self, who: &'a Identity, channel: &'a Tag) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            match channel.key() {
                "page" => true,
                "room" => match self.db.is_member(who.user.as_str(), channel.value()).await {
                    Ok(member) => member,
                    Err(e) => {
                        // Closed on failure: a private room stays private.
                        tracing::warn!(error = %e, "room membership unavailable; channel refused");
                        false
                    }
                },
                _ => false,
            }
        })
    }
}
