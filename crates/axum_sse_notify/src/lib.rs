//! Server-Sent Events notifications for axum.
//!
//! Backend code sends a named JSON event to one user, one sign-in
//! session, some clients, everyone with a tag, or everyone; browsers
//! receive it through `EventSource`. A reconnecting browser resumes with
//! `Last-Event-ID` and gets what it missed; persistent events wait in a
//! per-user inbox (SQLite or Postgres) while a user is offline; with
//! Redis, several processes serve one audience.
//!
//! ```no_run
//! use axum_sse_notify::{Notifier, SseConfig, SseEvent, Target, UserId};
//! # #[derive(serde::Serialize, serde::Deserialize)] struct Shipped { order: u64 }
//! # impl SseEvent for Shipped { const NAME: &'static str = "shipped"; }
//! # async fn run() -> Result<(), axum_sse_notify::EventError> {
//! let notifier = Notifier::new(SseConfig::default());
//! // Mount the stream; your auth middleware inserts an `Identity`.
//! let app: axum::Router = axum_sse_notify::routes().with_state(notifier.clone());
//! // Anywhere in the backend:
//! notifier.send(&Target::user(UserId::new("ann")), &Shipped { order: 7 })?;
//! # Ok(()) }
//! ```
//!
//! The host says who a request is by inserting an [`Identity`] request
//! extension (from its own sessions or tokens); the layer never trusts
//! anything else the client sends about identity. Everything the layer
//! needs beyond that is in [`SseConfig`]; it reads no files.
//!
//! Features: `server` (default: [`Notifier`], [`routes`]; live events,
//! no database), `inbox` (persistent notifications, on sqlx), `sqlite`
//! (default) and `postgres` (the inbox's engines; `notify_in` takes their
//! typed transactions),
//! `redis` (the bus through which several processes serve one audience),
//! `lean-serve` (streams served by `lean_serve::serve`
//! learn how their socket ended and end at once when stuck on a full one,
//! see [`socket`]), `leptos` (the `use_sse` hook, inert off the browser)
//! `service` (the publish API with service tokens, streams opened with
//! stream tokens: see [`service`]) and `browser` (the hook's WASM side). Without features, only the types
//! shared with a browser: [`SseEvent`], [`Event`], [`Target`], the ids and
//! the inbox's types.

#[cfg(feature = "leptos")]
pub mod browser;
pub mod event;
pub mod event_id;
pub mod inbox;
pub mod reset;
pub mod target;

#[cfg(feature = "server")]
pub mod bus;
#[cfg(feature = "server")]
pub mod channel;
#[cfg(feature = "server")]
pub mod clock;
#[cfg(feature = "server")]
mod collector;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
mod connection;
#[cfg(feature = "server")]
pub mod drain;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod notifier;
#[cfg(feature = "server")]
pub mod partition;
#[cfg(feature = "server")]
pub mod presence;
#[cfg(feature = "redis")]
mod redis_link;
#[cfg(feature = "server")]
pub mod registry;
#[cfg(feature = "server")]
pub mod route;
#[cfg(feature = "service")]
pub mod service;
#[cfg(feature = "server")]
pub mod socket;

#[cfg(feature = "leptos")]
pub use browser::{ConnectionState, RawEvent, SseHandle, SseOptions, Unsubscribe, use_sse};
pub use event::{Event, EventError, EventName, SseEvent};
pub use reset::{StoredResumed, StreamReset};
pub use target::{ClientId, Identity, Recipient, Scope, SessionId, Tag, TagError, Target, UserId};

pub use inbox::{InboxId, InboxItem, InboxPage, InboxSummary};

/// The log target of a stream's span and its connect and disconnect lines
/// (`RUST_LOG=axum_sse_notify::stream=warn` quiets them).
pub const STREAM_LOG: &str = "axum_sse_notify::stream";

#[cfg(feature = "server")]
pub use bus::{Bus, BusConfig, BusError, BusStatus, Follow, Following};
#[cfg(feature = "server")]
pub use channel::{ChannelGrant, ChannelPattern, ChannelPolicy, NoChannels, OpenChannels};
#[cfg(feature = "server")]
pub use config::SseConfig;
#[cfg(feature = "inbox")]
pub use inbox::{
    Audience, InTransaction, Inbox, InboxConfig, InboxError, InboxPool, Pending, Stored,
};
#[cfg(feature = "server")]
pub use notifier::Notifier;
#[cfg(feature = "server")]
pub use presence::{ChannelPresence, Member, Presence, UserPresence};
#[cfg(feature = "server")]
pub use registry::{
    Admission, ClientFilter, ClientInfo, Counts, DisconnectReason, InstanceStats, Peer, Registry,
    ResetReason, Resume, Stats, unix_millis_now,
};
#[cfg(feature = "server")]
pub use route::{ListingScope, Mount, Rejection, RemoteAddr, STREAM_PATH, routes};
#[cfg(feature = "service")]
pub use service::{
    Service, ServiceConfig, ServiceError,
    stream_token::{MintedToken, StreamClaims, StreamKey, StreamTokenError, StreamTokenRequest},
    token::{ServiceToken, ServiceTokens, TokenError, TokenInfo, TokenScope},
};
#[cfg(feature = "server")]
pub use socket::{StreamSocket, WatchedSocket};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
