//! [`Notifier`]: the handle backend code uses to send events.

use std::sync::Arc;

use serde::Serialize;

use super::bus::{Bus, BusConfig, BusError, BusStatus};
use super::channel::{ChannelPolicy, OpenChannels};
use super::config::SseConfig;
use super::event::{Event, EventError, SseEvent};
#[cfg(feature = "inbox")]
use super::inbox::{
    Audience, InTransaction, Inbox, InboxConfig, InboxError, InboxPool, Pending, Stored,
};
use super::presence::Presence;
use super::registry::{Registry, Stats};
#[cfg(feature = "service")]
use super::service::Service;
use super::target::{Target, UserId};

/// Sends events to connected clients. Cheap to clone (one `Arc`); put it
/// in app state, hand it to background tasks, read it from Leptos context
/// in server functions.
///
/// Two kinds of event: **live** ones ([`Notifier::send`]) reach the
/// clients connected now (and those that reconnect within the replay
/// history); **persistent** ones ([`Notifier::notify`], for types with
/// `PERSISTENT = true`) are stored in the users' inbox first, so users
/// who are offline get them when they come back.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # use axum_sse_notify::{Notifier, SseConfig, SseEvent, Target, UserId};
/// #[derive(Serialize, Deserialize)]
/// struct Invoice { number: u32 }
/// impl SseEvent for Invoice { const NAME: &'static str = "invoice"; }
///
/// let notifier = Notifier::new(SseConfig::default());
/// let reached = notifier.send(&Target::user(UserId::new("42")), &Invoice { number: 7 })?;
/// # assert_eq!(reached, 0);
/// # Ok::<(), axum_sse_notify::EventError>(())
/// ```
#[derive(Clone)]
pub struct Notifier {
    bus: Bus,
    #[cfg(feature = "inbox")]
    inbox: Option<Inbox>,
    /// Who may join which client-chosen channel (`?tag=`) on a stream
    /// opened with the host's session.
    channels: Arc<dyn ChannelPolicy>,
    presence: Presence,
    #[cfg(feature = "service")]
    service: Option<Service>,
}

impl Notifier {
    /// Live events only (no inbox: `Notifier::notify` fails), in this
    /// process only.
    pub fn new(config: SseConfig) -> Self {
        Notifier::assemble(Bus::local(Arc::new(Registry::new(config))))
    }

    /// With an inbox in `pool`'s database (an `AnyPool`, or a typed
    /// `PgPool` / `SqlitePool` with the `postgres` / `sqlite` features;
    /// its tables made by [`crate::inbox::schema`]), in this process only. Starts the inbox's writer on
    /// the current runtime; call [`Inbox::spawn_maintenance`] for the
    /// relay and the sweep.
    #[cfg(feature = "inbox")]
    pub fn with_inbox(config: SseConfig, pool: impl Into<InboxPool>, inbox: InboxConfig) -> Self {
        let bus = Bus::local(Arc::new(Registry::new(config)));
        let inbox = Inbox::start(pool, bus.clone(), inbox);
        Notifier {
            inbox: Some(inbox),
            ..Notifier::assemble(bus)
        }
    }

    /// Live events on the bus `bus` names (in-process if its URL is
    /// empty; Redis otherwise, connecting in the background). Fails only
    /// on a bus URL it cannot use.
    pub fn start(config: SseConfig, bus: &BusConfig) -> Result<Self, BusError> {
        Ok(Notifier::assemble(Bus::start(
            Arc::new(Bus::registry_for(config, bus)),
            bus,
        )?))
    }

    /// [`Notifier::start`] with an inbox in `pool`'s database (see
    /// [`Notifier::with_inbox`]).
    #[cfg(feature = "inbox")]
    pub fn start_with_inbox(
        config: SseConfig,
        bus: &BusConfig,
        pool: impl Into<InboxPool>,
        inbox: InboxConfig,
    ) -> Result<Self, BusError> {
        let bus = Bus::start(Arc::new(Bus::registry_for(config, bus)), bus)?;
        let inbox = Inbox::start(pool, bus.clone(), inbox);
        Ok(Notifier {
            inbox: Some(inbox),
            ..Notifier::assemble(bus)
        })
    }

    fn assemble(bus: Bus) -> Self {
        Notifier {
            presence: Presence::new(&bus),
            bus,
            #[cfg(feature = "inbox")]
            inbox: None,
            channels: Arc::new(OpenChannels),
            #[cfg(feature = "service")]
            service: None,
        }
    }

    /// Decides which client-chosen channels (`?tag=`) a stream opened
    /// with the host's session may join; the default, [`OpenChannels`],
    /// allows any key that is not reserved. Streams opened with a stream
    /// token join what its claims list instead.
    pub fn with_channel_policy(mut self, policy: impl ChannelPolicy) -> Self {
        self.channels = Arc::new(policy);
        self
    }

    pub fn channel_policy(&self) -> &dyn ChannelPolicy {
        &*self.channels
    }

    /// Who is online, per user and per channel (see [`crate::presence`];
    /// call [`Presence::spawn`] once for other processes' members and for
    /// join/leave events).
    pub fn presence(&self) -> &Presence {
        &self.presence
    }

    /// Turns on service mode: `POST /api/publish` and `POST
    /// /api/tokens/stream` answer, and streams accept stream tokens.
    #[cfg(feature = "service")]
    pub fn with_service(mut self, service: Service) -> Self {
        self.service = Some(service);
        self
    }

    /// Service mode, when it is on.
    #[cfg(feature = "service")]
    pub fn service(&self) -> Option<&Service> {
        self.service.as_ref()
    }

    /// Sends a typed live event. Returns how many of this process's
    /// connections it is for (see [`Bus::publish`]). A persistent type does not compile here: use `notify`.
    pub fn send<E: SseEvent>(&self, target: &Target, event: &E) -> Result<usize, EventError> {
        const {
            assert!(
                !E::PERSISTENT,
                "a persistent event is sent with `Notifier::notify`"
            )
        };
        self.bus.publish(target, &Event::typed(event)?, None)
    }

    /// Sends an untyped live event: any valid name, any serialisable
    /// payload.
    pub fn send_json(
        &self,
        target: &Target,
        name: &str,
        payload: &impl Serialize,
    ) -> Result<usize, EventError> {
        self.bus
            .publish(target, &Event::new(name.to_string(), payload)?, None)
    }

    /// Sends an event built beforehand (e.g. to send one event repeatedly).
    pub fn send_event(&self, target: &Target, event: &Event) -> Result<usize, EventError> {
        self.bus.publish(target, event, None)
    }

    /// Every connection of one user.
    pub fn to_user<E: SseEvent>(&self, user: &UserId, event: &E) -> Result<usize, EventError> {
        self.send(&Target::user(user.clone()), event)
    }

    /// Every connected client.
    pub fn broadcast<E: SseEvent>(&self, event: &E) -> Result<usize, EventError> {
        self.send(&Target::all(), event)
    }

    #[cfg(feature = "inbox")]
    /// Stores a persistent event in the inbox of `audience` (committed
    /// with other sends in one group commit), then publishes it to their
    /// live streams. A live-only type does not compile here: use `send`.
    pub async fn notify<E: SseEvent>(
        &self,
        audience: Audience,
        event: &E,
    ) -> Result<Stored, InboxError> {
        self.notify_event(audience, persistent(event)?).await
    }

    #[cfg(feature = "inbox")]
    /// [`Notifier::notify`] on behalf of a user (e.g. a message one user
    /// sends another). The inbox's cap evicts from the senders holding the
    /// most of a recipient's rows: a flood from `sender` pushes out
    /// `sender`'s own rows first, and never the rows of a sender holding no
    /// more than an even share of the cap. `notify` sends as the backend.
    pub async fn notify_from<E: SseEvent>(
        &self,
        sender: &UserId,
        audience: Audience,
        event: &E,
    ) -> Result<Stored, InboxError> {
        self.inbox()?
            .store_from(Some(sender.clone()), audience, persistent(event)?)
            .await
    }

    #[cfg(feature = "inbox")]
    /// [`Notifier::notify`] for an untyped event.
    pub async fn notify_json(
        &self,
        audience: Audience,
        name: &str,
        payload: &impl Serialize,
    ) -> Result<Stored, InboxError> {
        self.notify_event(audience, Event::new(name.to_string(), payload)?)
            .await
    }

    #[cfg(feature = "inbox")]
    /// [`Notifier::notify`] for an event built beforehand.
    pub async fn notify_event(
        &self,
        audience: Audience,
        event: Event,
    ) -> Result<Stored, InboxError> {
        self.inbox()?.store(audience, event).await
    }

    #[cfg(feature = "inbox")]
    /// Writes a persistent event in the caller's transaction (`&mut *tx`
    /// of an `sqlx::Transaction` on an `AnyPool`, a `PgPool` or a
    /// `SqlitePool`, see [`InTransaction`]): it exists only if the
    /// transaction commits. Publish the returned [`Pending`] after the
    /// commit; a crash before that is covered by the relay.
    pub async fn notify_in<'c, E: SseEvent>(
        &self,
        tx: impl Into<InTransaction<'c>>,
        audience: Audience,
        event: &E,
    ) -> Result<Pending, InboxError> {
        self.inbox()?.stage(tx, audience, persistent(event)?).await
    }

    #[cfg(feature = "inbox")]
    /// The inbox, for reads and read state.
    pub fn inbox(&self) -> Result<&Inbox, InboxError> {
        self.inbox.as_ref().ok_or(InboxError::NoInbox)
    }

    /// Closes the matching connections, in every process (e.g. at
    /// sign-out). Returns how many were in this one. A whole session
    /// (`Target::session`, no tags) is taken as ended: for two minutes its
    /// new streams are refused (401 `session_ended`), so that a request
    /// still on its way cannot outlive a sign-out. To make a session's
    /// streams reconnect instead, target their users or client ids.
    pub fn disconnect(&self, target: &Target) -> usize {
        self.bus.kick(target)
    }

    /// Ends every stream and refuses new ones; call on shutdown.
    pub fn shutdown(&self) {
        self.bus.registry().shutdown();
        self.bus.stop();
    }

    /// This process's registry, for listings.
    pub fn registry(&self) -> &Arc<Registry> {
        self.bus.registry()
    }

    /// The figures of every process (see [`Bus::stats`]).
    pub fn stats(&self) -> Stats {
        self.bus.stats()
    }

    /// Adds the layer's series to a Prometheus registry: open streams,
    /// connects and disconnects by reason, refusals, replays, the bus's
    /// state (read at each scrape), and, with `SseConfig::metrics`, send
    /// latency, sends by target kind, bus lag and the inbox's queries.
    pub fn register_metrics(&self, into: &mut prometheus_client::registry::Registry) {
        crate::collector::register(into, self.registry(), self.bus());
    }

    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    pub fn bus_status(&self) -> BusStatus {
        self.bus.status()
    }
}

/// A persistent event, typed: a live-only type does not compile here.
#[cfg(feature = "inbox")]
fn persistent<E: SseEvent>(event: &E) -> Result<Event, EventError> {
    const {
        assert!(
            E::PERSISTENT,
            "a live-only event is sent with `Notifier::send`; set `PERSISTENT = true` to store it"
        )
    };
    Event::typed(event)
}
