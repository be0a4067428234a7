//! The demo's event and its server functions: what the `/home` page (and
//! `curl`) use to send notifications.
//!
//! `POST /api/sse/test` and `POST /api/sse/broadcast` take a JSON body;
//! they are server functions at fixed paths, so the page's Send button and
//! a plain HTTP client call the same code.

use leptos::prelude::*;
use leptos::server_fn::codec::Json;
use serde::{Deserialize, Serialize};

use crate::error::AppError;
use crate::sse::SseEvent;

/// Longest message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 2000;

/// A notification as the browser receives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub message: String,
    /// Who sent it, when known.
    pub from: Option<String>,
    /// Unix milliseconds, set by the server.
    pub sent_at: u64,
}

impl SseEvent for Notification {
    const NAME: &'static str = "notification";
    /// Kept in the inbox: a user who was offline sees it when they return.
    const PERSISTENT: bool = true;
}

/// The answer of the send functions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    /// Connections (in this process) the event was queued for.
    pub delivered: usize,
    /// The stored notification's id, when it was stored (a `notification`
    /// to a user or to everyone; other events and sends to one client or
    /// a tag are live only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<crate::sse::InboxId>,
}

/// Connection figures for the dashboard (`TrackConnections`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionStats {
    pub total_clients: usize,
    /// Username → open connections. Empty for non-admins, who may not see
    /// other users' names.
    pub clients_per_user: std::collections::BTreeMap<String, usize>,
    pub average_connection_seconds: f64,
    pub events_sent: u64,
    /// Unix milliseconds.
    pub last_event_at: Option<u64>,
    /// With several server processes: each one's open connections (for
    /// admins; empty otherwise).
    #[serde(default)]
    pub instances: Vec<InstanceShare>,
}

/// One server process's open connections.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceShare {
    pub instance: String,
    pub clients: usize,
}

/// The live connection figures of every server process. Admins get
/// per-user counts and each process's share.
#[server(prefix = "/api", endpoint = "sse/stats")]
pub async fn live_stats() -> Result<ConnectionStats, AppError> {
    let user = crate::auth::api::server::require_user()?;
    let notifier = use_context::<crate::sse::Notifier>()
        .ok_or_else(|| AppError::internal("the notifier is not in the server's context"))?;
    let stats = notifier.stats();
    let stats = if user.is_admin {
        stats
    } else {
        stats.aggregate_only()
    };
    Ok(ConnectionStats {
        total_clients: stats.total_clients,
        clients_per_user: stats.clients_per_user,
        average_connection_seconds: stats.average_connection_seconds,
        events_sent: stats.events_sent,
        last_event_at: stats.last_event_at,
        instances: stats
            .instances
            .into_iter()
            .map(|i| InstanceShare {
                instance: i.instance,
                clients: i.clients,
            })
            .collect(),
    })
}

/// Sends `message` to every connection of `user` (a username or user id),
/// as a `notification` event unless `event` names another; with `client`
/// (a client id), to that one connection only (`Target::clients`).
#[server(prefix = "/api", endpoint = "sse/test", input = Json)]
pub async fn send_test(
    user: String,
    event: Option<String>,
    message: String,
    #[server(default)] client: Option<String>,
) -> Result<Delivered, AppError> {
    use crate::sse::{ClientId, Target, UserId};
    let sender = crate::auth::api::server::require_user()?;
    // Before the lookup: an account past its rate must not learn which
    // names exist from 400 `unknown_user` versus 429.
    server::check_send_rate(&sender.username).await?;
    let user = user.trim();
    if user.is_empty() {
        return Err(AppError::bad_request(
            "missing_user",
            "Name a user to send to.",
        ));
    }
    let auth = use_context::<crate::auth::Auth>()
        .ok_or_else(|| AppError::internal("auth is not in the server's context"))?;
    let record = auth
        .db()
        .user_by_id_or_username(user)
        .await
        .map_err(|e| AppError::internal(e.to_string()))?
        .ok_or_else(|| {
            AppError::bad_request("unknown_user", format!("There is no user named {user:?}."))
        })?;
    let to = match client.as_deref().map(str::trim) {
        None | Some("") => server::To::User(UserId::new(record.id)),
        Some(text) => {
            let id = ClientId::parse(text).ok_or_else(|| {
                AppError::bad_request("bad_client_id", format!("{text:?} is not a client id"))
            })?;
            server::To::Live(Target::clients([id]))
        }
    };
    server::send(to, event, message, sender.username).await
}

/// Sends `message` to everyone connected, or with `tag` (`key:value`) to
/// every connection carrying that tag. Admins only.
#[server(prefix = "/api", endpoint = "sse/broadcast", input = Json)]
pub async fn broadcast(
    event: Option<String>,
    message: String,
    #[server(default)] tag: Option<String>,
) -> Result<Delivered, AppError> {
    let sender = crate::auth::api::server::require_user()?;
    if !sender.is_admin {
        return Err(AppError::new(
            crate::error::ErrorKind::Forbidden,
            "forbidden",
            "Only admins may broadcast.",
        ));
    }
    server::check_send_rate(&sender.username).await?;
    let to = match tag.as_deref().map(str::trim) {
        None | Some("") => server::To::Everyone,
        Some(text) => {
            let tag = crate::sse::Tag::parse(text)
                .map_err(|e| AppError::bad_request("bad_tag", e.to_string()))?;
            server::To::Live(crate::sse::Target::all().with(tag))
        }
    };
    server::send(to, event, message, sender.username).await
}

#[cfg(feature = "ssr")]
mod server {
    use super::*;
    use crate::auth::rate_limit::SendLimit;
    use crate::sse::metrics::Refusal;
    use crate::sse::{Audience, EventError, EventName, InboxError, Notifier, Target, UserId};

    /// Where a demo send goes. A `notification` to a user or to everyone
    /// is stored (persistent); anything else is live only.
    pub(super) enum To {
        User(UserId),
        Everyone,
        Live(Target),
    }

    fn notifier() -> Result<Notifier, AppError> {
        use_context::<Notifier>()
            .ok_or_else(|| AppError::internal("the notifier is not in the server's context"))
    }

    /// Counts one send by `from`; 429 `send_rate` past the rate. Runs
    /// first in every send function, so that a refused account gets the
    /// same answer whatever it asks for.
    pub(super) async fn check_send_rate(from: &str) -> Result<(), AppError> {
        let Some(sends) = use_context::<SendLimit>() else {
            return Ok(());
        };
        let Err(wait) = sends.check(from).await else {
            return Ok(());
        };
        notifier()?.registry().count_refusal(Refusal::SendRate);
        Err(AppError::new(
            crate::error::ErrorKind::TooManyRequests,
            "send_rate",
            format!(
                "Too many sends from this account; try again in {} s.",
                wait.as_secs_f64().ceil().max(1.0) as u64
            ),
        )
        .retry_after(wait))
    }

    /// Sends after [`check_send_rate`] let the sender through.
    pub(super) async fn send(
        to: To,
        event: Option<String>,
        message: String,
        from: String,
    ) -> Result<Delivered, AppError> {
        let notifier = notifier()?;
        if message.trim().is_empty() {
            return Err(AppError::bad_request(
                "empty_message",
                "The message is empty.",
            ));
        }
        let chars = message.chars().count();
        if chars > MAX_MESSAGE_CHARS {
            return Err(AppError::bad_request(
                "message_too_long",
                format!("The message has {chars} characters; the limit is {MAX_MESSAGE_CHARS}."),
            ));
        }
        let name = match event.as_deref().map(str::trim) {
            None | Some("") => Notification::NAME.to_string(),
            Some(name) => name.to_string(),
        };
        match EventName::new(name.clone()) {
            Ok(_) => {}
            Err(e @ EventError::ReservedName(_)) => {
                return Err(AppError::bad_request("reserved_event_name", e.to_string()));
            }
            Err(e) => return Err(AppError::bad_request("bad_event_name", e.to_string())),
        }
        let payload = Notification {
            message,
            from: Some(from),
            sent_at: crate::sse::registry::unix_millis_now(),
        };
        let persistent = name == Notification::NAME;
        let target = match to {
            To::User(user) if persistent => {
                return store(&notifier, Audience::user(user), &payload).await;
            }
            To::Everyone if persistent => {
                return store(&notifier, Audience::Everyone, &payload).await;
            }
            To::User(user) => Target::user(user),
            To::Everyone => Target::all(),
            To::Live(target) => target,
        };
        match notifier.send_json(&target, &name, &payload) {
            Ok(delivered) => Ok(Delivered {
                delivered,
                id: None,
            }),
            Err(e) => Err(event_error(e)),
        }
    }

    /// Stored as sent by the signed-in user: the inbox's cap evicts by
    /// sender, so one account's flood pushes out its own rows first.
    async fn store(
        notifier: &Notifier,
        audience: Audience,
        payload: &Notification,
    ) -> Result<Delivered, AppError> {
        let sender = UserId::new(crate::auth::api::server::require_user()?.id);
        match notifier.notify_from(&sender, audience, payload).await {
            Ok(stored) => Ok(Delivered {
                delivered: stored.delivered,
                id: Some(stored.id),
            }),
            Err(InboxError::Event(e)) => Err(event_error(e)),
            Err(e) => Err(crate::inbox_api::server_error(e)),
        }
    }

    fn event_error(e: EventError) -> AppError {
        match e {
            EventError::PayloadTooLarge { .. } => {
                AppError::bad_request("payload_too_large", e.to_string())
            }
            EventError::BusBusy { .. } => AppError::new(
                crate::error::ErrorKind::Unavailable,
                "bus_busy",
                e.to_string(),
            )
            .retry_after(std::time::Duration::from_secs(1)),
            e => AppError::bad_request("bad_event", e.to_string()),
        }
    }
}
