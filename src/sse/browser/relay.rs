//! What tabs sharing one stream say to each other, and what each does
//! with it: the pure part of tab sharing (no browser API), so that the
//! de-duplication and hand-over rules are tested on the host.
//!
//! One tab, the leader, owns the `EventSource` and relays everything it
//! receives; every tab (the leader too) keeps a [`Tab`]: the ids it has
//! seen, where a stream of its own would resume, and the event names the
//! tabs listen to. When the leader goes, whichever tab takes over resumes
//! from its own [`Tab::resume`], which is as far as the relays reached it;
//! the replay may repeat what some tabs already have, and each drops it.

use std::collections::{BTreeSet, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEvent {
    pub name: String,
    pub id: Option<String>,
    pub data: String,
}

/// A message on the tabs' channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t")]
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
    /// Every name any tab listens for, as far as this tab has heard.
    names: BTreeSet<String>,
}

impl Tab {
    /// An event from the stream (the leader's own, or relayed): updates
    /// where to resume and returns it if this tab has not had it yet.
    pub fn receive(&mut self, event: WireEvent) -> Option<WireEvent> {
        if let Some(id) = &event.id {
            self.last_id = Some(id.clone());
        }
        let built_in = BUILT_IN.contains(&event.name.as_str());
        if event.name == "connected" {
            self.client = serde_json::from_str::<serde_json::Value>(&event.data)
                .ok()
                .and_then(|v| v["clientId"].as_str().map(str::to_string));
        }
        match &event.id {
            Some(id) if !built_in && !self.seen.insert(&event.name, id) => None,
            _ => Some(event),
        }
    }

    /// A message from another tab. `leader`: whether this tab owns the
    /// stream now.
    pub fn handle(&mut self, message: Message, leader: bool) -> Reaction {
        let mut reaction = Reaction::default();
        match message {
            // A new leader may still get its predecessor's last relays:
            // they move its place on, and its replay drops them.
            Message::Event(event) => {
                let before = self.client.clone();
                reaction.deliver = self.receive(event);
                if self.client != before {
                    reaction.client = self.client.clone();
                }
            }
            Message::State { .. } | Message::Leaving if leader => {}
            // A leader that closed for good hands over rather than
            // closing the others: the next tab tries for itself.
            Message::State { state } => {
                if !matches!(state, ConnectionState::Closed { .. }) {
                    reaction.state = Some(state);
                }
            }
            Message::Sync {
                state,
                client,
                last_id,
                names,
            } => {
                if !leader {
                    if !matches!(state, ConnectionState::Closed { .. }) {
                        reaction.state = Some(state);
                    }
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
        !BUILT_IN.contains(&name) && self.names.insert(name.to_string())
    }

    /// Adds names other tabs listen for to the union (at most
    /// [`NAMES_MAX`] in all); returns the ones that were new.
    pub fn learn(&mut self, names: impl IntoIterator<Item = String>) -> Vec<String> {
        let mut new = Vec::new();
        for name in names {
            if self.names.len() >= NAMES_MAX {
                break;
            }
            if !BUILT_IN.contains(&name.as_str()) && self.names.insert(name.clone()) {
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
            names: self.names.iter().cloned().collect(),
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

/// The most recent `(name, id)` pairs, oldest forgotten first.
#[derive(Debug, Default)]
struct Seen {
    order: VecDeque<(String, String)>,
    set: HashSet<(String, String)>,
}

impl Seen {
    /// False if the pair was already there.
    fn insert(&mut self, name: &str, id: &str) -> bool {
        let key = (name.to_string(), id.to_string());
        if self.set.contains(&key) {
            return false;
        }
        if self.order.len() >= SEEN_MAX
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.order.push_back(key.clone());
        self.set.insert(key);
        true
    }
}

#[cfg(test)]
mod tests;
