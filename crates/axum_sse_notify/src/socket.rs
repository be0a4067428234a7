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
}
