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

pub mod browser;
pub mod event;
pub mod inbox;
pub mod target;

#[cfg(feature = "ssr")]
pub mod bus;
#[cfg(feature = "ssr")]
pub mod config;
#[cfg(feature = "ssr")]
mod connection;
#[cfg(feature = "ssr")]
pub mod event_id;
#[cfg(feature = "ssr")]
pub mod metrics;
#[cfg(feature = "ssr")]
pub mod notifier;
#[cfg(feature = "ssr")]
pub mod registry;
#[cfg(feature = "ssr")]
pub mod route;

pub use browser::{ConnectionState, RawEvent, SseHandle, SseOptions, Unsubscribe, use_sse};
pub use event::{Event, EventError, EventName, SseEvent};
pub use target::{ClientId, Identity, Recipient, Scope, SessionId, Tag, TagError, Target, UserId};

pub use inbox::{InboxId, InboxItem, InboxPage, InboxSummary};

/// The log target of a stream's span and its connect and disconnect lines
/// (`RUST_LOG=sse_notify::stream=warn` quiets them).
pub const STREAM_LOG: &str = "sse_notify::stream";

#[cfg(feature = "ssr")]
pub use bus::{Bus, BusConfig, BusError, BusStatus};
#[cfg(feature = "ssr")]
pub use config::SseConfig;
#[cfg(feature = "ssr")]
pub use inbox::{Audience, Inbox, InboxConfig, InboxError, Pending, Stored};
#[cfg(feature = "ssr")]
pub use notifier::Notifier;
#[cfg(feature = "ssr")]
pub use registry::{
    Admission, ClientFilter, ClientInfo, Counts, DisconnectReason, InstanceStats, Peer, Registry,
    ResetReason, Resume, Stats, unix_millis_now,
};
#[cfg(feature = "ssr")]
pub use route::{ListingScope, RemoteAddr, routes};
