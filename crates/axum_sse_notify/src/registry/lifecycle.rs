//! How a connection ends: the reasons, the signal that carries one from
//! the registry (which decides) to the stream (which obeys), and the guard
//! that unregisters a client and logs its end whatever ended it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use super::Registry;
use super::queue::EventQueue;
use crate::socket::WatchedSocket;
use crate::target::{ClientId, UserId};

/// Why a connection ended. Logged, and counted in the stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum DisconnectReason {
    /// The browser closed the connection (tab closed, navigation).
    ClientClosed = 1,
    /// Writing to the socket failed.
    WriteError = 2,
    /// The socket accepted no bytes for the server's write timeout.
    IdleTimeout = 3,
    /// The client fell `queue_len` events behind.
    QueueOverflow = 4,
    /// The server is shutting down.
    Shutdown = 5,
    /// Closed by the application (e.g. the user signed out).
    Kicked = 6,
    /// The client sent bytes after its request, beyond a small allowance
    /// (an event stream reads nothing).
    UnexpectedInput = 7,
    /// Its browser reconnected (`client=` with its id) before the server
    /// noticed this connection was gone.
    Replaced = 8,
    /// Ended by a draining server, told to reconnect after a jittered
    /// delay (to another instance, behind a load balancer).
    Drained = 9,
    /// The user's role changed (`sse_notify admin grant|revoke`) while the
    /// stream carried the old `role:` tag; the browser reconnects and
    /// resumes with the new one.
    RolesChanged = 10,
}

impl DisconnectReason {
    pub(crate) fn from_u8(n: u8) -> Option<Self> {
        Some(match n {
            1 => Self::ClientClosed,
            2 => Self::WriteError,
            3 => Self::IdleTimeout,
            4 => Self::QueueOverflow,
            5 => Self::Shutdown,
            6 => Self::Kicked,
            7 => Self::UnexpectedInput,
            8 => Self::Replaced,
            9 => Self::Drained,
            10 => Self::RolesChanged,
            _ => return None,
        })
    }

    /// Every reason, in number order.
    pub const ALL: [DisconnectReason; 10] = [
        Self::ClientClosed,
        Self::WriteError,
        Self::IdleTimeout,
        Self::QueueOverflow,
        Self::Shutdown,
        Self::Kicked,
        Self::UnexpectedInput,
        Self::Replaced,
        Self::Drained,
        Self::RolesChanged,
    ];

    /// Slots of an array indexed by the reason's number (0 is unused).
    pub const SLOTS: usize = 11;

    /// The reason as a metric label or log field.
    pub fn label(self) -> &'static str {
        match self {
            Self::ClientClosed => "client_closed",
            Self::WriteError => "write_error",
            Self::IdleTimeout => "idle_timeout",
            Self::QueueOverflow => "queue_overflow",
            Self::Shutdown => "shutdown",
            Self::Kicked => "kicked",
            Self::UnexpectedInput => "unexpected_input",
            Self::Replaced => "replaced",
            Self::Drained => "drained",
            Self::RolesChanged => "roles_changed",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientClosed => "client closed",
            Self::WriteError => "write error",
            Self::IdleTimeout => "idle timeout",
            Self::QueueOverflow => "queue overflow",
            Self::Shutdown => "shutdown",
            Self::Kicked => "closed by the server",
            Self::UnexpectedInput => "unexpected input",
            Self::Replaced => "replaced by its reconnect",
            Self::Drained => "drained",
            Self::RolesChanged => "roles changed",
        }
    }
}

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
