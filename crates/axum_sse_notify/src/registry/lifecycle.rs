//! How a connection ends: the guard that unregisters a client and logs
//! its end whatever ended it, and the drain's removal of streams.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Registry;
use super::link::ClientLink;
use super::reason::DisconnectReason;
use crate::target::{ClientId, UserId};

/// Unregisters its client when dropped, whatever ended the connection:
/// the one place where a connection's end is recorded and logged.
pub(super) struct ClientGuard {
    registry: Arc<Registry>,
    id: ClientId,
    user: UserId,
    since: Instant,
    link: Arc<ClientLink>,
    /// The stream's span, when logging records it (boxed: most of the
    /// time it is not, and an idle stream's size is what it costs).
    span: Option<Box<tracing::Span>>,
}

impl ClientGuard {
    pub(super) fn new(
        registry: Arc<Registry>,
        id: ClientId,
        user: UserId,
        link: Arc<ClientLink>,
    ) -> Self {
        ClientGuard {
            registry,
            id,
            user,
            since: Instant::now(),
            link,
            span: None,
        }
    }

    pub(super) fn set_span(&mut self, span: tracing::Span) {
        self.span = (!span.is_disabled()).then(|| Box::new(span));
    }

    /// Runs `f` inside the stream's span, if it has one.
    pub(super) fn in_span<T>(&self, f: impl FnOnce() -> T) -> T {
        match &self.span {
            Some(span) => span.in_scope(f),
            None => f(),
        }
    }

    pub(super) fn registry(&self) -> &Registry {
        &self.registry
    }

    pub(super) fn link(&self) -> &ClientLink {
        &self.link
    }

    /// Ends the connection with `fallback` unless a reason was already set.
    pub(super) fn finish(&self, fallback: DisconnectReason) -> DisconnectReason {
        self.link.close(fallback);
        self.link.reason().unwrap_or(fallback)
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        let reason = self.link.reason().unwrap_or(DisconnectReason::ClientClosed);
        self.registry.unregister(self.id, &self.link, reason);
        let duration = Duration::from_millis(self.since.elapsed().as_millis() as u64);
        let events_sent = self.link.events_sent.load(Ordering::Relaxed);
        // The fields are repeated for when the span is not recorded.
        self.in_span(|| {
            tracing::info!(target: crate::STREAM_LOG, client = %self.id, user = %self.user,
                reason = reason.label(), ?duration, events_sent, "sse client disconnected");
        });
    }
}

impl Registry {
    /// Refuses new streams (503 `shutting_down`) and leaves open ones be:
    /// the start of a drain.
    pub fn stop_admitting(&self) {
        self.shutting_down
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Takes up to `n` connections out of the indexes (for the caller to
    /// close): a shutdown takes all, a drain a batch.
    pub(super) fn remove_some(&self, n: usize) -> Vec<super::index::Entry> {
        let mut indexes = self.write();
        let ids: Vec<ClientId> = indexes.clients.keys().take(n).copied().collect();
        ids.into_iter()
            .filter_map(|id| indexes.remove(id))
            .collect()
    }

    /// Ends every open stream of one partition with
    /// [`DisconnectReason::Drained`] (their browsers resume from their
    /// last id); returns how many.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // the Redis bus's
    pub(crate) fn drain_partition(&self, partition: usize) -> usize {
        let removed: Vec<_> = {
            let mut indexes = self.write();
            let ids: Vec<ClientId> = indexes
                .clients
                .iter()
                .filter(|(_, entry)| usize::from(entry.partition) == partition)
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter()
                .filter_map(|id| indexes.remove(id))
                .collect()
        };
        for entry in &removed {
            entry.link.close(DisconnectReason::Drained);
        }
        removed.len()
    }

    /// Ends up to `n` open streams with [`DisconnectReason::Drained`]
    /// (each is told a jittered `retry:`); returns their links, whose
    /// sockets the caller cuts if they cannot take that last frame.
    pub(crate) fn drain(&self, n: usize) -> Vec<Arc<ClientLink>> {
        self.remove_some(n)
            .into_iter()
            .map(|entry| {
                entry.link.close(DisconnectReason::Drained);
                entry.link
            })
            .collect()
    }
}
