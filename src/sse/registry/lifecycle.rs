//! How a connection ends: the reasons, and the signal that carries one
//! from the registry (which decides) to the stream (which obeys).

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use serde::Serialize;
use tokio::sync::Notify;

/// Why a connection ended. Logged, and counted in the stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum DisconnectReason {
    /// The browser closed the connection (tab closed, navigation).
    ClientClosed = 1,
    /// Writing to the socket failed.
    WriteError = 2,
    /// The socket accepted no bytes for `client_timeout`.
    IdleTimeout = 3,
    /// The client fell `queue_len` events behind.
    QueueOverflow = 4,
    /// The server is shutting down.
    Shutdown = 5,
    /// Closed by the application (e.g. the user signed out).
    Kicked = 6,
}

impl DisconnectReason {
    fn from_u8(n: u8) -> Option<Self> {
        Some(match n {
            1 => Self::ClientClosed,
            2 => Self::WriteError,
            3 => Self::IdleTimeout,
            4 => Self::QueueOverflow,
            5 => Self::Shutdown,
            6 => Self::Kicked,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientClosed => "client closed",
            Self::WriteError => "write error",
            Self::IdleTimeout => "idle timeout",
            Self::QueueOverflow => "queue overflow",
            Self::Shutdown => "shutdown",
            Self::Kicked => "closed by the server",
        }
    }
}

/// A one-shot "this connection must end, because …" shared by the registry
/// (which decides) and the connection stream (which obeys).
#[derive(Default)]
pub(crate) struct CloseSignal {
    reason: AtomicU8,
    notify: Notify,
}

impl CloseSignal {
    /// Records the first reason only; later ones lose.
    pub(crate) fn close(&self, reason: DisconnectReason) {
        if self
            .reason
            .compare_exchange(0, reason as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // notify_one stores a permit if the stream is not waiting yet.
            self.notify.notify_one();
        }
    }

    pub(crate) fn reason(&self) -> Option<DisconnectReason> {
        DisconnectReason::from_u8(self.reason.load(Ordering::Acquire))
    }

    pub(crate) async fn closed(&self) -> DisconnectReason {
        loop {
            if let Some(reason) = self.reason() {
                return reason;
            }
            self.notify.notified().await;
        }
    }
}

/// State shared between a registry entry and its stream.
pub(crate) struct ClientLink {
    pub(crate) close: CloseSignal,
    pub(crate) events_sent: AtomicU64,
    /// Events framed for this client, not yet written.
    pub(crate) queue: super::queue::EventQueue,
}
