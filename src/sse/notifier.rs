//! [`Notifier`]: the handle backend code uses to send events.

use std::sync::Arc;

use serde::Serialize;

use super::config::SseConfig;
use super::event::{Event, EventError, SseEvent};
use super::registry::{DisconnectReason, Registry};
use super::target::{Target, UserId};

/// Sends events to connected clients. Cheap to clone (one `Arc`); put it
/// in app state, hand it to background tasks, read it from Leptos context
/// in server functions.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # use sse_notify::sse::{Notifier, SseConfig, SseEvent, Target, UserId};
/// #[derive(Serialize, Deserialize)]
/// struct Invoice { number: u32 }
/// impl SseEvent for Invoice { const NAME: &'static str = "invoice"; }
///
/// let notifier = Notifier::new(SseConfig::default());
/// let reached = notifier.send(&Target::user(UserId::new("42")), &Invoice { number: 7 })?;
/// # assert_eq!(reached, 0);
/// # Ok::<(), sse_notify::sse::EventError>(())
/// ```
#[derive(Clone)]
pub struct Notifier {
    registry: Arc<Registry>,
}

impl Notifier {
    pub fn new(config: SseConfig) -> Self {
        Notifier {
            registry: Arc::new(Registry::new(config)),
        }
    }

    /// Sends a typed event. Returns how many local connections it reached.
    pub fn send<E: SseEvent>(&self, target: &Target, event: &E) -> Result<usize, EventError> {
        self.registry.send(target, &Event::typed(event)?)
    }

    /// Sends an untyped event: any valid name, any serialisable payload.
    pub fn send_json(
        &self,
        target: &Target,
        name: &str,
        payload: &impl Serialize,
    ) -> Result<usize, EventError> {
        self.registry
            .send(target, &Event::new(name.to_string(), payload)?)
    }

    /// Sends an event built beforehand (e.g. to send one event repeatedly).
    pub fn send_event(&self, target: &Target, event: &Event) -> Result<usize, EventError> {
        self.registry.send(target, event)
    }

    /// Every connection of one user.
    pub fn to_user<E: SseEvent>(&self, user: &UserId, event: &E) -> Result<usize, EventError> {
        self.send(&Target::user(user.clone()), event)
    }

    /// Every connected client.
    pub fn broadcast<E: SseEvent>(&self, event: &E) -> Result<usize, EventError> {
        self.send(&Target::all(), event)
    }

    /// Closes the matching connections (e.g. at sign-out).
    pub fn disconnect(&self, target: &Target) -> usize {
        self.registry
            .disconnect_matching(target, DisconnectReason::Kicked)
    }

    /// Ends every stream and refuses new ones; call on shutdown.
    pub fn shutdown(&self) {
        self.registry.shutdown();
    }

    /// The registry, for listings and statistics.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }
}
