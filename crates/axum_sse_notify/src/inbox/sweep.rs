//! Retention and the per-user cap, applied in bulk. Inserts apply the cap
//! to the users they reach; this pass catches the rest (rows that aged
//! out, broadcasts beyond the cap, sends whose every recipient row went).

use super::writer::now_ms;
use super::{Inbox, InboxError};

impl Inbox {
    /// One pass; returns the rows deleted.
    pub async fn sweep_once(&self) -> Result<u64, InboxError> {
        let config = self.config();
        let retention = i64::try_from(config.retention.as_millis()).unwrap_or(i64::MAX);
        let deleted = self
            .inner
            .store
            .sweep(
                now_ms().saturating_sub(retention),
                config.max_per_user as i64,
            )
            .await
            .map_err(InboxError::store)?;
        if deleted > 0 {
            tracing::info!(deleted, "inbox sweep");
        }
        Ok(deleted)
    }
}
