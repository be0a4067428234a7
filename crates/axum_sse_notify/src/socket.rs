//! What the layer can use of a connection server that watches its sockets.
//!
//! Under plain `axum::serve` a stream learns nothing about its socket: a
//! client that stopped reading is noticed only when its queue fills. A
//! server that watches each socket (as [`lean_serve`](https://docs.rs/lean_serve)
//! does) can say how the socket ended and fail a write stuck on a full
//! one at once. It inserts a [`StreamSocket`] request extension; with the
//! `lean-serve` feature the layer also reads `lean_serve`'s own
//! `ConnectInfo` directly.

use std::sync::Arc;

use crate::registry::reason::DisconnectReason;

/// A watched socket, as the layer sees it.
pub trait WatchedSocket: std::fmt::Debug + Send + Sync + 'static {
    /// How the socket ended, once it has: the reason recorded for a
    /// stream whose body was dropped without the registry ending it.
    fn ended(&self) -> Option<DisconnectReason>;
    /// Fails a write waiting on a full socket (and any later one that
    /// cannot proceed at once), so that ending a stream is immediate.
    fn abort_stalled_writes(&self);

    /// Takes the stream's write turn when its task has nothing in flight,
    /// so that a publisher writes the stream's queued events itself
    /// ([`WatchedSocket::write_claimed`] or [`WatchedSocket::hand_back`]
    /// must follow). Servers that write every frame from the stream's own
    /// task never give it.
    fn try_claim(&self) -> bool {
        false
    }

    /// Whether a publisher holds the turn (it writes, or hands to the
    /// task, whatever is queued meanwhile).
    fn is_claimed(&self) -> bool {
        false
    }

    /// With the turn claimed: writes `frames` as one piece without
    /// waiting, and gives the turn back (to the stream's task, woken, if
    /// not all of it was written or `more` frames are left).
    fn write_claimed(&self, frames: &mut dyn Iterator<Item = &[u8]>, more: bool) -> ClaimedWrite {
        let _ = (frames, more);
        ClaimedWrite::Failed
    }

    /// Gives a claimed turn to the stream's task without writing.
    fn hand_back(&self) {}
}

/// How a write from the publisher went ([`WatchedSocket::write_claimed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimedWrite {
    /// All of it.
    All,
    /// Part: the server writes the rest; the frames count as written.
    Part,
    /// Nothing, the socket being full: the frames are still to write.
    Blocked,
    /// The socket failed or is gone.
    Failed,
}

/// The request extension a connection server inserts for each request.
#[derive(Debug, Clone)]
pub struct StreamSocket(pub Arc<dyn WatchedSocket>);

#[cfg(feature = "lean-serve")]
impl WatchedSocket for lean_serve::SocketState {
    fn ended(&self) -> Option<DisconnectReason> {
        use lean_serve::SocketEnd;
        lean_serve::SocketState::ended(self).map(|end| match end {
            SocketEnd::PeerClosed => DisconnectReason::ClientClosed,
            SocketEnd::WriteFailed | SocketEnd::Aborted => DisconnectReason::WriteError,
            SocketEnd::WriteStalled => DisconnectReason::IdleTimeout,
            SocketEnd::UnexpectedInput => DisconnectReason::UnexpectedInput,
        })
    }

    fn abort_stalled_writes(&self) {
        lean_serve::SocketState::abort_stalled_writes(self);
    }

    fn try_claim(&self) -> bool {
        lean_serve::SocketState::try_claim(self)
    }

    fn is_claimed(&self) -> bool {
        lean_serve::SocketState::is_claimed(self)
    }

    fn write_claimed(&self, frames: &mut dyn Iterator<Item = &[u8]>, more: bool) -> ClaimedWrite {
        use lean_serve::Claimed;
        match lean_serve::SocketState::write_claimed(self, frames, more) {
            Claimed::All => ClaimedWrite::All,
            Claimed::Part => ClaimedWrite::Part,
            Claimed::Blocked => ClaimedWrite::Blocked,
            Claimed::Failed => ClaimedWrite::Failed,
        }
    }

    fn hand_back(&self) {
        lean_serve::SocketState::hand_back(self);
    }
}
