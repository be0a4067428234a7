//! What a registry entry and its stream share: the queue, the reason the
//! connection must end (set once, by whoever decides first), and the
//! socket, so that ending a stream also frees a write stuck on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;

use super::queue::EventQueue;
use super::reason::DisconnectReason;
use crate::socket::WatchedSocket;

/// State shared between a registry entry and its stream: the queue, the
/// reason the connection must end (set once, by whoever decides first),
/// and one waker for both, so that a stream waits on a single thing.
pub(crate) struct ClientLink {
    /// 0 while open, else a [`DisconnectReason`].
    reason: AtomicU8,
    pub(crate) events_sent: AtomicU64,
    /// Events framed for this client, not yet written.
    pub(crate) queue: EventQueue,
    /// The connection's socket, when served by a server that watches its sockets ([`crate::socket`]): an
    /// end decided here also interrupts a write stuck on a full socket.
    socket: Option<Arc<dyn WatchedSocket>>,
}

/// What a stream must do next.
pub(crate) enum Next {
    Write(Bytes),
    End(DisconnectReason),
}

impl ClientLink {
    pub(crate) fn new(queue_len: usize, socket: Option<Arc<dyn WatchedSocket>>) -> Self {
        ClientLink {
            reason: AtomicU8::new(0),
            events_sent: AtomicU64::new(0),
            queue: EventQueue::new(queue_len),
            socket,
        }
    }

    /// Ends the connection with `reason`, unless it already has one; the
    /// stream wakes and ends, and a write waiting for a full socket fails
    /// (what fits is still written: a reading client sees a clean end).
    pub(crate) fn close(&self, reason: DisconnectReason) {
        if self
            .reason
            .compare_exchange(0, reason as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.queue.wake();
            // A drained stream ends gracefully: its last frame (the
            // jittered `retry:`) must reach the browser, not be reset.
            if let Some(socket) = self
                .socket
                .as_ref()
                .filter(|_| reason != DisconnectReason::Drained)
            {
                socket.abort_stalled_writes();
            }
        }
    }

    /// Fails a write stuck on a full socket (and any later one that
    /// cannot proceed at once).
    pub(crate) fn abort_socket(&self) {
        if let Some(socket) = &self.socket {
            socket.abort_stalled_writes();
        }
    }

    pub(crate) fn reason(&self) -> Option<DisconnectReason> {
        DisconnectReason::from_u8(self.reason.load(Ordering::Acquire))
    }

    /// The end if one was decided (it wins over queued events), else the
    /// next queued event, else `Pending` with the stream's waker kept.
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Next> {
        if let Some(reason) = self.reason() {
            return Poll::Ready(Next::End(reason));
        }
        match self.queue.poll_pop(cx) {
            Poll::Ready(frame) => Poll::Ready(Next::Write(frame)),
            // A close between the check above and the waker registration
            // in poll_pop woke no one: look again.
            Poll::Pending => match self.reason() {
                Some(reason) => Poll::Ready(Next::End(reason)),
                None => Poll::Pending,
            },
        }
    }
}
