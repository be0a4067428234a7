//! The SSE layer: backend code sends events, browsers receive them.
//!
//! It depends on nothing else in the app. Identity arrives as an
//! [`Identity`] request extension (inserted by the app's auth layer);
//! everything else it needs is in [`SseConfig`].
//!
//! Server side (feature `ssr`): [`Notifier`] (send) and [`routes`] (mount
//! `GET /api/sse` and `GET /api/sse/clients` on any axum router, served by
//! `axum::serve` or by [`crate::http::serve`], whose stall-watching
//! sockets also let a stream stuck on a full socket end at once); with a
//! database, the [`inbox`] keeps persistent events for offline users.
//! Shared with the browser: [`SseEvent`], [`Event`], [`Target`], the id
//! types and the inbox's types.

#[cfg(feature = "leptos")]
pub mod browser;
pub mod event;
pub mod inbox;
pub mod target;

#[cfg(feature = "server")]
pub mod bus;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
mod connection;
#[cfg(feature = "server")]
pub mod drain;
#[cfg(feature = "server")]
pub mod event_id;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod notifier;
#[cfg(feature = "server")]
pub mod registry;
#[cfg(feature = "server")]
pub mod route;
#[cfg(feature = "server")]
pub mod socket;

#[cfg(feature = "leptos")]
pub use browser::{ConnectionState, RawEvent, SseHandle, SseOptions, Unsubscribe, use_sse};
pub use event::{Event, EventError, EventName, SseEvent};
pub use target::{ClientId, Identity, Recipient, Scope, SessionId, Tag, TagError, Target, UserId};

pub use inbox::{InboxId, InboxItem, InboxPage, InboxSummary};

/// The log target of a stream's span and its connect and disconnect lines
/// (`RUST_LOG=axum_sse_notify::stream=warn` quiets them).
pub const STREAM_LOG: &str = "axum_sse_notify::stream";

#[cfg(feature = "server")]
pub use bus::{Bus, BusConfig, BusError, BusStatus};
#[cfg(feature = "server")]
pub use config::SseConfig;
#[cfg(feature = "server")]
pub use inbox::{Audience, Inbox, InboxConfig, InboxError, Pending, Stored};
#[cfg(feature = "server")]
pub use notifier::Notifier;
#[cfg(feature = "server")]
pub use registry::{
    Admission, ClientFilter, ClientInfo, Counts, DisconnectReason, InstanceStats, Peer, Registry,
    ResetReason, Resume, Stats, unix_millis_now,
};
#[cfg(feature = "server")]
pub use route::{ListingScope, Mount, Rejection, RemoteAddr, routes};
#[cfg(feature = "server")]
pub use socket::{StreamSocket, WatchedSocket};
