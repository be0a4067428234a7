//! The publish API's body and answer, and publishing a checked batch in
//! order: what `POST /api/publish` runs once the caller's token is
//! known.
//!
//! A body is one publication or an array of them (a batch). Every item is
//! checked before anything is published (names, sizes, targets: the same
//! rules as [`crate::Notifier`]'s), so a bad item refuses the whole batch
//! and delivers nothing.

use serde::{Deserialize, Serialize};

use super::idempotency::{Claim, KeyError, valid_key};
use super::{Service, ServiceConfig};
use crate::bus::Bus;
use crate::event::{Event, EventError};
use crate::event_id::InboxId;
use crate::inbox::{Audience, Inbox, InboxError};
use crate::target::{ClientId, SessionId, Tag, Target, UserId};

/// One event to publish.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Publication {
    pub target: TargetSpec,
    /// Narrows the target to clients that also carry every one of these.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// The SSE event name.
    pub event: String,
    /// Any JSON; `null` when absent.
    #[serde(default)]
    pub data: serde_json::Value,
    /// Stored in the users' inbox first (users or everyone, no tags).
    #[serde(default)]
    pub persistent: bool,
    /// A retry with the same key (same token) within the window answers
    /// the first result and delivers nothing again.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// Who receives it: `{"user": "42"}`, `{"users": ["1", "2"]}`,
/// `{"session": "…"}`, `{"clients": ["<client id>"]}`,
/// `{"channel": "room:blue"}` (or `"tag"`), or `"everyone"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum TargetSpec {
    User(UserId),
    Users(Vec<UserId>),
    Session(SessionId),
    Clients(Vec<ClientId>),
    #[serde(alias = "tag")]
    Channel(Tag),
    Everyone,
}

/// What one publication did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Published {
    /// Connections of the process that took the request the event was
    /// queued for (with the Redis bus, other processes deliver theirs
    /// from the stream: they are not counted here).
    pub connections: usize,
    /// The stored notification, for a persistent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbox_id: Option<InboxId>,
    /// This is the first request's answer to a repeated idempotency key:
    /// nothing was delivered this time.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
}

/// Why a publish request was refused or stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishError {
    /// Item `index` is wrong: nothing was published.
    Invalid {
        index: usize,
        code: &'static str,
        message: String,
    },
    /// Too many events in one request.
    TooMany { count: usize, max: usize },
    /// Item `index`'s key is being published by another request: nothing
    /// was published.
    InFlight { index: usize },
    /// The idempotency store could not be used: nothing was published.
    Keys(String, bool),
    /// Item `index` could not be published; the items before it were
    /// (`done`), none after it.
    Failed {
        index: usize,
        busy: bool,
        message: String,
        done: Vec<Published>,
    },
}

/// A publication checked and ready.
struct Ready {
    send: Send,
    event: Event,
    key: Option<String>,
}

enum Send {
    Live(Vec<Target>),
    Stored(Audience),
}

fn invalid(index: usize, code: &'static str, message: impl Into<String>) -> PublishError {
    PublishError::Invalid {
        index,
        code,
        message: message.into(),
    }
}

/// Checks one publication as the Rust API would.
fn check(
    index: usize,
    publication: Publication,
    config: &ServiceConfig,
    max_payload: usize,
) -> Result<Ready, PublishError> {
    let event = Event::new(publication.event, &publication.data)
        .map_err(|e| invalid(index, "bad_event", e.to_string()))?;
    if event.data().len() > max_payload {
        let e = EventError::PayloadTooLarge {
            size: event.data().len(),
            max: max_payload,
        };
        return Err(invalid(index, "payload_too_large", e.to_string()));
    }
    if let Some(key) = &publication.idempotency_key
        && !valid_key(key)
    {
        return Err(invalid(
            index,
            "bad_idempotency_key",
            format!(
                "an idempotency key is 1 to {} bytes of visible ASCII",
                super::idempotency::MAX_KEY_LEN
            ),
        ));
    }
    let too_many = |n: usize| {
        invalid(
            index,
            "too_many_targets",
            format!(
                "{n} targets; at most {} per publication",
                config.max_targets
            ),
        )
    };
    let mut users: Vec<UserId> = Vec::new();
    let send = match publication.target {
        TargetSpec::User(user) => {
            users.push(user);
            None
        }
        TargetSpec::Users(list) => {
            if list.len() > config.max_targets {
                return Err(too_many(list.len()));
            }
            if list.is_empty() {
                return Err(invalid(index, "no_target", "`users` is empty"));
            }
            for user in list {
                if !users.contains(&user) {
                    users.push(user);
                }
            }
            None
        }
        TargetSpec::Session(session) => Some(Target::session(session)),
        TargetSpec::Clients(clients) => {
            if clients.len() > config.max_targets {
                return Err(too_many(clients.len()));
            }
            if clients.is_empty() {
                return Err(invalid(index, "no_target", "`clients` is empty"));
            }
            Some(Target::clients(clients))
        }
        TargetSpec::Channel(tag) => Some(Target::all().with(tag)),
        TargetSpec::Everyone => Some(Target::all()),
    };
    if let Some(user) = users.iter().find(|u| u.as_str().is_empty()) {
        return Err(invalid(
            index,
            "bad_user",
            format!("{user:?} is not a user id"),
        ));
    }
    if publication.persistent {
        if !publication.tags.is_empty() {
            return Err(invalid(
                index,
                "not_storable",
                "a persistent event goes to users or everyone, without tags",
            ));
        }
        let audience = match send {
            None => Audience::Users(users),
            Some(target) if target == Target::all() => Audience::Everyone,
            Some(_) => {
                return Err(invalid(
                    index,
                    "not_storable",
                    "a persistent event goes to users or everyone; sessions, clients and channels are live only",
                ));
            }
        };
        return Ok(Ready {
            send: Send::Stored(audience),
            event,
            key: publication.idempotency_key,
        });
    }
    let narrow = |target: Target| {
        publication
            .tags
            .iter()
            .cloned()
            .fold(target, |target, tag| target.with(tag))
    };
    let targets = match send {
        Some(target) => vec![narrow(target)],
        None => users.into_iter().map(|u| narrow(Target::user(u))).collect(),
    };
    Ok(Ready {
        send: Send::Live(targets),
        event,
        key: publication.idempotency_key,
    })
}

impl Service {
    /// Publishes `items` in order for the token `token` (its name scopes
    /// the idempotency keys): all checked first, keys claimed, then each
    /// published. The answer has one entry per item.
    pub(crate) async fn publish(
        &self,
        bus: &Bus,
        inbox: Option<&Inbox>,
        token: &str,
        items: Vec<Publication>,
    ) -> Result<Vec<Published>, PublishError> {
        let state = self.state();
        let config = &state.config;
        if items.len() > config.batch_max {
            return Err(PublishError::TooMany {
                count: items.len(),
                max: config.batch_max,
            });
        }
        let max_payload = bus.registry().config().max_payload;
        let mut ready = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            let item = check(index, item, config, max_payload)?;
            if let Some(key) = &item.key
                && ready.iter().any(|r: &Ready| r.key.as_ref() == Some(key))
            {
                return Err(invalid(
                    index,
                    "duplicate_idempotency_key",
                    "two items of one batch carry the same idempotency key",
                ));
            }
            if matches!(item.send, Send::Stored(_)) && inbox.is_none() {
                return Err(invalid(index, "no_inbox", InboxError::NoInbox.to_string()));
            }
            ready.push(item);
        }
        // Keys first: a batch whose key is in flight elsewhere publishes
        // nothing.
        let mut claims: Vec<Option<Claim>> = Vec::with_capacity(ready.len());
        for (index, item) in ready.iter().enumerate() {
            let Some(key) = &item.key else {
                claims.push(None);
                continue;
            };
            let claim = match state.keys.claim(token, key).await {
                Ok(Claim::InFlight) => Err(PublishError::InFlight { index }),
                Ok(claim) => Ok(claim),
                Err(KeyError::Full(n)) => {
                    Err(PublishError::Keys(KeyError::Full(n).to_string(), true))
                }
                Err(e) => Err(PublishError::Keys(e.to_string(), false)),
            };
            match claim {
                Ok(claim) => claims.push(Some(claim)),
                Err(error) => {
                    self.release(token, &ready[..index], &claims).await;
                    return Err(error);
                }
            }
        }
        let mut done: Vec<Published> = Vec::with_capacity(ready.len());
        for (index, (item, claim)) in ready.iter().zip(&claims).enumerate() {
            if let Some(Claim::Done(first)) = claim {
                let mut first: Published = serde_json::from_str(first).unwrap_or(Published {
                    connections: 0,
                    inbox_id: None,
                    replayed: true,
                });
                first.replayed = true;
                done.push(first);
                continue;
            }
            match send(bus, inbox, item).await {
                Ok(published) => {
                    if let Some(key) = &item.key {
                        let record = serde_json::to_string(&published).unwrap_or_default();
                        state.keys.complete(token, key, record).await;
                    }
                    done.push(published);
                }
                Err((busy, message)) => {
                    self.release(token, &ready[index..], &claims[index..]).await;
                    return Err(PublishError::Failed {
                        index,
                        busy,
                        message,
                        done,
                    });
                }
            }
        }
        Ok(done)
    }

    /// Gives back the keys these items claimed fresh.
    async fn release(&self, token: &str, items: &[Ready], claims: &[Option<Claim>]) {
        for (item, claim) in items.iter().zip(claims) {
            if let (Some(key), Some(Claim::Fresh)) = (&item.key, claim) {
                self.state().keys.release(token, key).await;
            }
        }
    }
}

/// Publishes one checked item: `Err((busy, message))` when it could not.
async fn send(bus: &Bus, inbox: Option<&Inbox>, item: &Ready) -> Result<Published, (bool, String)> {
    match &item.send {
        Send::Live(targets) => {
            // Waits (bounded) for room in the bus's queue rather than
            // dropping a send the caller was told went out.
            let deadline = tokio::time::Instant::now() + bus.wait_bound();
            let mut connections = 0;
            for target in targets {
                connections += bus
                    .publish_waiting(target, &item.event, None, deadline)
                    .await
                    .map_err(|e| (matches!(e, EventError::BusBusy { .. }), e.to_string()))?;
            }
            Ok(Published {
                connections,
                inbox_id: None,
                replayed: false,
            })
        }
        Send::Stored(audience) => {
            let inbox = inbox.ok_or((false, InboxError::NoInbox.to_string()))?;
            let stored = inbox
                .store(audience.clone(), item.event.clone())
                .await
                .map_err(|e| {
                    (
                        matches!(e, InboxError::Store(_) | InboxError::Stopped),
                        e.to_string(),
                    )
                })?;
            Ok(Published {
                connections: stored.delivered,
                inbox_id: Some(stored.id),
                replayed: false,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Publication {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn targets_parse_in_every_form() {
        let p = parse(r#"{"target":{"user":"42"},"event":"e","data":{"n":1}}"#);
        assert_eq!(p.target, TargetSpec::User(UserId::new("42")));
        assert!(!p.persistent && p.idempotency_key.is_none());
        assert_eq!(
            parse(r#"{"target":"everyone","event":"e"}"#).target,
            TargetSpec::Everyone
        );
        assert_eq!(
            parse(r#"{"target":{"tag":"room:blue"},"event":"e"}"#).target,
            TargetSpec::Channel(Tag::parse("room:blue").unwrap())
        );
        for bad in [
            r#"{"target":{"user":"42"}}"#,
            r#"{"target":{"group":"x"},"event":"e"}"#,
            r#"{"target":{"channel":"no colon"},"event":"e"}"#,
            r#"{"target":"everyone","event":"e","extra":1}"#,
            r#"{"target":{"clients":["not-a-uuid"]},"event":"e"}"#,
        ] {
            assert!(serde_json::from_str::<Publication>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn checks_refuse_what_the_rust_api_refuses() {
        let config = ServiceConfig::default();
        let code = |json: &str, max: usize| match check(3, parse(json), &config, max) {
            Ok(_) => "ok",
            Err(PublishError::Invalid { index, code, .. }) => {
                assert_eq!(index, 3);
                code
            }
            Err(other) => panic!("{other:?}"),
        };
        assert_eq!(code(r#"{"target":"everyone","event":"hi"}"#, 100), "ok");
        assert_eq!(
            code(r#"{"target":"everyone","event":"connected"}"#, 100),
            "bad_event"
        );
        assert_eq!(
            code(r#"{"target":"everyone","event":""}"#, 100),
            "bad_event"
        );
        assert_eq!(
            code(
                r#"{"target":"everyone","event":"e","data":"xxxxxxxxxx"}"#,
                5
            ),
            "payload_too_large"
        );
        assert_eq!(
            code(r#"{"target":{"users":[]},"event":"e"}"#, 100),
            "no_target"
        );
        assert_eq!(
            code(r#"{"target":{"user":""},"event":"e"}"#, 100),
            "bad_user"
        );
        assert_eq!(
            code(
                r#"{"target":{"session":"s"},"event":"e","persistent":true}"#,
                100
            ),
            "not_storable"
        );
        assert_eq!(
            code(
                r#"{"target":{"user":"a"},"tags":["page:x"],"event":"e","persistent":true}"#,
                100
            ),
            "not_storable"
        );
        assert_eq!(
            code(
                r#"{"target":{"user":"a"},"event":"e","persistent":true}"#,
                100
            ),
            "ok"
        );
        assert_eq!(
            code(
                r#"{"target":"everyone","event":"e","idempotencyKey":"a b"}"#,
                100
            ),
            "bad_idempotency_key"
        );
        let many: Vec<String> = (0..1001).map(|i| format!("\"u{i}\"")).collect();
        assert_eq!(
            code(
                &format!(
                    r#"{{"target":{{"users":[{}]}},"event":"e"}}"#,
                    many.join(",")
                ),
                100
            ),
            "too_many_targets"
        );
    }
}
