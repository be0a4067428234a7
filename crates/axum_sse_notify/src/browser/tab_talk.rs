//! What tabs sharing one stream say to each other, and what each does
//! with it: the pure part of tab sharing (no browser API), so that the
//! de-duplication and hand-over rules are tested on the host.
//!
//! One tab, the leader, owns the `EventSource` and passes on everything
//! it receives (the word "relay" is kept for the inbox's outbox relay); every tab (the leader too) keeps a [`Tab`]: the ids it has
//! seen, where a stream of its own would resume, and the event names the
//! tabs listen to. When the leader goes, whichever tab takes over resumes
//! from its own [`Tab::resume`], which is as far as the leader's messages reached it;
//! the replay may repeat what some tabs already have, and each drops it.

use std::collections::VecDeque;

use super::ConnectionState;

/// Events every stream carries, whatever the tabs listen to: they are
/// the stream's own bookkeeping, so they are never de-duplicated (the
/// `connected` event of a resumed stream repeats the last id seen).
pub const BUILT_IN: [&str; 3] = ["connected", "sse-reset", "sse-drain"];

/// How many `(name, id)` pairs a tab remembers. A hand-over's replay
/// overlaps only what was in flight between tabs, far fewer than this.
pub const SEEN_MAX: usize = 1024;

/// How many distinct event names other tabs may ask the leader to listen
/// for (a tab's own names are always listened for).
pub const NAMES_MAX: usize = 256;

/// One event on the wire, as the leader received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireEvent {
    pub name: String,
    pub id: Option<String>,
    pub data: String,
}

/// A message on the tabs' channel (sent as an array of strings: see
/// [`Message::to_parts`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// Leader → tabs: one event from the stream, in stream order.
    Event(WireEvent),
    /// Leader → tabs: the connection's state changed.
    State { state: ConnectionState },
    /// Leader → tabs: everything a tab that just joined needs.
    Sync {
        state: ConnectionState,
        client: Option<String>,
        last_id: Option<String>,
        names: Vec<String>,
    },
    /// A tab → all: it is here and listens for these names (the leader
    /// answers with `Sync`, and listens for any name new to it).
    Join { names: Vec<String> },
    /// A tab → all: it listens for these names too.
    Names { names: Vec<String> },
    /// Leader → tabs: it is leaving; another tab will take over.
    Leaving,
    /// Leader → tabs: it is alive, and its state (every [`BEAT`], so a
    /// follower misled by a message from a tab that no longer leads is
    /// set right within one beat).
    Beat { state: ConnectionState },
}

/// How often a leader says it is alive.
pub const BEAT: u64 = 2_000;

/// How long a follower waits without hearing from its leader before it
/// takes the lock (ms, before jitter): a leader whose page is blocked
/// (an `alert()`, a debugger) or suspended in the background holds the
/// stream for every tab, so a visible tab takes it over.
pub const PATIENCE: u64 = 8_000;

/// When a follower last heard from its leader, and how long it waits.
#[derive(Debug)]
pub struct Watch {
    heard: u64,
    /// The last check: a long gap since means this tab itself was not
    /// running (a laptop asleep, the clock moved), not that the leader
    /// was silent.
    checked: u64,
    patience: u64,
}

impl Watch {
    /// `jitter` in 0.0..1.0 adds up to half of [`PATIENCE`], so that two
    /// tabs rarely give up on a leader at the same moment.
    pub fn new(now: u64, jitter: f64) -> Self {
        Watch {
            heard: now,
            checked: now,
            patience: PATIENCE + (PATIENCE as f64 / 2.0 * jitter.clamp(0.0, 1.0)) as u64,
        }
    }

    pub fn heard(&mut self, now: u64) {
        self.heard = now;
    }

    /// Called every [`BEAT`]: whether the leader has been silent for
    /// longer than this tab waits, while this tab was running.
    pub fn stale(&mut self, now: u64) -> bool {
        let paused = now < self.checked || now - self.checked > 2 * BEAT;
        self.checked = now;
        if paused || now < self.heard {
            self.heard = now;
            return false;
        }
        now - self.heard > self.patience
    }
}

impl Message {
    /// The message as strings, the first saying which message it is.
    /// Hand-written rather than derived: the tabs' protocol then costs the
    /// bundle a few hundred bytes instead of serde's tagged-enum code.
    pub fn to_parts(&self) -> Vec<String> {
        let mut parts = Vec::new();
        let mut push = |s: &str| parts.push(s.to_string());
        match self {
            Message::Event(event) => {
                push("e");
                push(&event.name);
                push(event.id.as_deref().unwrap_or(""));
                push(&event.data);
            }
            Message::State { state } => {
                push("s");
                state_parts(state, &mut push);
            }
            Message::Sync {
                state,
                client,
                last_id,
                names,
            } => {
                push("y");
                state_parts(state, &mut push);
                push(client.as_deref().unwrap_or(""));
                push(last_id.as_deref().unwrap_or(""));
                names.iter().for_each(|n| push(n));
            }
            Message::Join { names } | Message::Names { names } => {
                push(if matches!(self, Message::Join { .. }) {
                    "j"
                } else {
                    "n"
                });
                names.iter().for_each(|n| push(n));
            }
            Message::Leaving => push("l"),
            Message::Beat { state } => {
                push("b");
                state_parts(state, &mut push);
            }
        }
        parts
    }

    /// Reads [`Message::to_parts`]' form back; `None` for anything else.
    pub fn from_parts(parts: &[String]) -> Option<Message> {
        let (kind, rest) = parts.split_first()?;
        // Ids are never empty, so "" stands for none.
        let optional = |s: &String| Some(s.clone()).filter(|s| !s.is_empty());
        Some(match (kind.as_str(), rest) {
            ("e", [name, id, data]) => Message::Event(WireEvent {
                name: name.clone(),
                id: optional(id),
                data: data.clone(),
            }),
            ("s", [kind, arg]) => Message::State {
                state: state_from(kind, arg)?,
            },
            ("y", [kind, arg, client, last_id, names @ ..]) => Message::Sync {
                state: state_from(kind, arg)?,
                client: optional(client),
                last_id: optional(last_id),
                names: names.to_vec(),
            },
            ("j", names) => Message::Join {
                names: names.to_vec(),
            },
            ("n", names) => Message::Names {
                names: names.to_vec(),
            },
            ("l", []) => Message::Leaving,
            ("b", [kind, arg]) => Message::Beat {
                state: state_from(kind, arg)?,
            },
            _ => return None,
        })
    }
}

/// A state as two strings: its kind and its detail.
fn state_parts(state: &ConnectionState, push: &mut impl FnMut(&str)) {
    let (kind, detail) = match state {
        ConnectionState::Connecting => ("connecting", String::new()),
        ConnectionState::Open => ("open", String::new()),
        ConnectionState::Reconnecting { attempt } => ("reconnecting", attempt.to_string()),
        ConnectionState::Closed { reason } => ("closed", reason.clone()),
    };
    push(kind);
    push(&detail);
}

fn state_from(kind: &str, arg: &str) -> Option<ConnectionState> {
    Some(match kind {
        "connecting" => ConnectionState::Connecting,
        "open" => ConnectionState::Open,
        "reconnecting" => ConnectionState::Reconnecting {
            attempt: arg.parse().ok()?,
        },
        "closed" => ConnectionState::Closed {
            reason: arg.to_string(),
        },
        _ => return None,
    })
}

/// A state a follower takes from a beat or a sync: not `Closed`, which
/// only an explicit `State` (the stream over for every tab) brings.
fn shown(state: ConnectionState) -> Option<ConnectionState> {
    (!matches!(state, ConnectionState::Closed { .. })).then_some(state)
}

/// What a tab does with one message.
#[derive(Debug, Default, PartialEq)]
pub struct Reaction {
    /// Hand this event to the tab's listeners.
    pub deliver: Option<WireEvent>,
    /// Show this state.
    pub state: Option<ConnectionState>,
    /// The client id changed: show it.
    pub client: Option<String>,
    /// (Leader) names the stream must now listen for.
    pub attach: Vec<String>,
    /// (Leader) answer with a `Sync`.
    pub sync: bool,
    /// The shared stream is over for every tab (the leader gave up, or
    /// was signed out): close, saying why.
    pub close: Option<String>,
}

/// Where a stream opened by this tab resumes.
#[derive(Debug, PartialEq, Eq)]
pub struct Resume<'a> {
    pub last_id: Option<&'a str>,
    pub client: Option<&'a str>,
}

/// One tab's view of the shared stream.
#[derive(Debug, Default)]
pub struct Tab {
    seen: Seen,
    last_id: Option<String>,
    client: Option<String>,
    /// Every name any tab listens for, as far as this tab has heard (a
    /// handful: a list is smaller in the bundle than a set).
    names: Vec<String>,
}

impl Tab {
    /// An event from the stream (the leader's own, or relayed): updates
    /// where to resume and returns it if this tab has not had it yet.
    pub fn receive(&mut self, event: WireEvent) -> Option<WireEvent> {
        if let Some(id) = &event.id {
            self.last_id = Some(id.clone());
        }
        if event.name == "connected" {
            self.client = serde_json::from_str::<serde_json::Value>(&event.data)
                .ok()
                .and_then(|v| v["clientId"].as_str().map(str::to_string));
        }
        self.first_time(event)
    }

    /// The event, unless this tab has delivered it already. The stream's
    /// own events always pass. A stored notification is the same one
    /// under any stream id (one resumed after a restart, or sent again in
    /// a backlog, comes with a new one): its inbox id names it.
    fn first_time(&mut self, event: WireEvent) -> Option<WireEvent> {
        match &event.id {
            Some(id) if !BUILT_IN.contains(&event.name.as_str()) => {
                let stored = crate::event_id::InboxId::from_event_id(id).map(|n| format!(":{n}"));
                let key = stored.as_deref().unwrap_or(id);
                self.seen.insert(&event.name, key).then_some(event)
            }
            _ => Some(event),
        }
    }

    /// A message from another tab. `leader`: whether this tab owns the
    /// stream now.
    pub fn handle(&mut self, message: Message, leader: bool) -> Reaction {
        let mut reaction = Reaction::default();
        match message {
            // A new leader may still get its predecessor's last relays:
            // its own stream has them too (they are after where it
            // resumed), so they are delivered once, and never move its
            // place (which its own stream may have passed).
            Message::Event(event) if leader => reaction.deliver = self.first_time(event),
            Message::Event(event) => {
                let before = self.client.clone();
                reaction.deliver = self.receive(event);
                if self.client != before {
                    reaction.client = self.client.clone();
                }
            }
            Message::State { .. } | Message::Leaving | Message::Beat { .. } if leader => {}
            Message::Beat { state } => reaction.state = shown(state),
            // A leader ends for good only when the stream is over for
            // every tab (a page that merely leaves says `Leaving`).
            Message::State { state } => {
                if let ConnectionState::Closed { reason } = &state {
                    reaction.close = Some(reason.clone());
                }
                reaction.state = Some(state);
            }
            Message::Sync {
                state,
                client,
                last_id,
                names,
            } => {
                if !leader {
                    reaction.state = shown(state);
                    if client.is_some() && client != self.client {
                        self.client.clone_from(&client);
                        reaction.client = client;
                    }
                    // Only a tab with nothing of its own takes the
                    // leader's place: its relays will carry it on.
                    if self.last_id.is_none() {
                        self.last_id = last_id;
                    }
                }
                self.learn(names);
            }
            Message::Join { names } => {
                reaction.attach = self.learn(names);
                reaction.sync = leader;
            }
            Message::Names { names } => reaction.attach = self.learn(names),
            Message::Leaving => reaction.state = Some(ConnectionState::Connecting),
        }
        if !leader {
            reaction.attach.clear();
        }
        reaction
    }

    /// A name this tab listens for itself (never refused, unlike the
    /// names heard from other tabs); true if it is new to the union.
    pub fn listen_for(&mut self, name: &str) -> bool {
        let new = !BUILT_IN.contains(&name) && !self.names.iter().any(|n| n == name);
        if new {
            self.names.push(name.to_string());
        }
        new
    }

    /// Whether a message comes from a leader (and so shows it is alive).
    pub fn from_leader(message: &Message) -> bool {
        !matches!(message, Message::Join { .. } | Message::Names { .. })
    }

    /// Adds names other tabs listen for to the union (at most
    /// [`NAMES_MAX`] in all); returns the ones that were new.
    pub fn learn(&mut self, names: impl IntoIterator<Item = String>) -> Vec<String> {
        let mut new = Vec::new();
        for name in names {
            if self.names.len() >= NAMES_MAX {
                break;
            }
            if self.listen_for(&name) {
                new.push(name);
            }
        }
        new
    }

    /// Every name a stream opened by this tab must listen for.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// What a `Sync` from this tab (as leader) says.
    pub fn sync(&self, state: ConnectionState) -> Message {
        Message::Sync {
            state,
            client: self.client.clone(),
            last_id: self.last_id.clone(),
            names: self.names.clone(),
        }
    }

    pub fn resume(&self) -> Resume<'_> {
        Resume {
            last_id: self.last_id.as_deref(),
            client: self.client.as_deref(),
        }
    }

    pub fn client(&self) -> Option<&str> {
        self.client.as_deref()
    }
}

/// The most recent `(name, id)` pairs, oldest forgotten first. A list
/// searched from the newest end: a duplicate is one of the last few
/// events, and a list costs the bundle less than a hash set.
#[derive(Debug, Default)]
struct Seen {
    order: VecDeque<(String, String)>,
}

impl Seen {
    /// False if the pair was already there.
    fn insert(&mut self, name: &str, id: &str) -> bool {
        if self.order.iter().rev().any(|(n, i)| i == id && n == name) {
            return false;
        }
        if self.order.len() >= SEEN_MAX {
            self.order.pop_front();
        }
        self.order.push_back((name.to_string(), id.to_string()));
        true
    }
}

#[cfg(test)]
mod tests;
