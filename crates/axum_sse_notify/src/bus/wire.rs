//! What a stream entry holds, and how a [`Target`] is written in it.
//!
//! Fields (short names: every entry carries them): `h` the history's
//! epoch (added by the append script), `u` who appended it (see [`Origin`]),
//! `k` the kind (`e` an event, `d` a disconnect, `g` a gap: sends that
//! reached one process's clients only, `o` the marker that opens a
//! history), `t` the target as JSON, `n` the event name, `d` its data,
//! `i` the inbox id if stored, `q` its inbox position (see
//! [`crate::event_id::InboxSeq`]; entries written before it existed have
//! none, read as 0: they move no position). The publisher writes all but
//! `h` as one field `b` ([`Outgoing::body`]), the same bytes it publishes
//! on the entry's channel; readers take either form.

use serde_json::{Value, json};

use crate::event::{Event, EventName};
use crate::event_id::{InboxId, InboxSeq, InboxStamp};
use crate::target::{ClientId, Scope, SessionId, Tag, Target, UserId};

/// What a process asks the bus to carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    Event {
        target: Target,
        event: Event,
        inbox: Option<InboxStamp>,
    },
    Kick {
        target: Target,
    },
    /// This process delivered sends to its own clients only (Redis was
    /// out of its reach): other processes' clients may have missed some.
    Gap,
}

/// Who appended an entry: a publisher (one per process run, a random
/// number) and its count of appends. A publisher whose connection failed
/// cannot know whether its last appends were applied; it appends them
/// again on a new connection, and readers drop what they already saw
/// (each publisher's counts arrive in order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub publisher: u64,
    pub seq: u64,
}

impl Origin {
    fn encode(self) -> String {
        format!("{:x}-{}", self.publisher, self.seq)
    }

    fn decode(text: &str) -> Option<Self> {
        let (publisher, seq) = text.split_once('-')?;
        Some(Origin {
            publisher: u64::from_str_radix(publisher, 16).ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

/// What a process reads back (the marker that opens a history is read as
/// nothing to do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Event {
        target: Target,
        event: Event,
        inbox: Option<InboxStamp>,
    },
    Kick {
        target: Target,
    },
    Gap,
    Marker,
}

impl Outgoing {
    /// The entry's fields (without `h`, which the append script adds).
    pub fn fields(&self, origin: Origin) -> Vec<(&'static str, String)> {
        let mut fields = vec![("u", origin.encode())];
        fields.extend(self.own_fields());
        fields
    }

    fn own_fields(&self) -> Vec<(&'static str, String)> {
        match self {
            Outgoing::Event {
                target,
                event,
                inbox,
            } => {
                let mut fields = vec![
                    ("k", "e".to_string()),
                    ("t", encode_target(target)),
                    ("n", event.name().as_str().to_string()),
                    ("d", event.data().to_string()),
                ];
                if let Some(stamp) = inbox {
                    fields.push(("i", stamp.id.to_string()));
                    fields.push(("q", stamp.seq.to_string()));
                }
                fields
            }
            Outgoing::Kick { target } => {
                vec![("k", "d".to_string()), ("t", encode_target(target))]
            }
            Outgoing::Gap => vec![("k", "g".to_string())],
        }
    }
}

/// Where an entry is published for live delivery (the own-clients read,
/// [`crate::bus::Follow::Own`]): an event for one user on that user's
/// channel, read only by the processes holding a stream of the user;
/// everything else (everyone, tags, sessions, clients, kicks, gaps) on the
/// wide channel every process reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    User(&'a UserId),
    Wide,
}

impl Outgoing {
    /// The channel this item is published on.
    pub fn route(&self) -> Route<'_> {
        match self {
            Outgoing::Event { target, .. } => match target.scope() {
                Scope::User(user) => Route::User(user),
                _ => Route::Wide,
            },
            // A kick ends sign-ins wherever they are remembered (not only
            // where the user has a stream): every process reads it.
            Outgoing::Kick { .. } | Outgoing::Gap => Route::Wide,
        }
    }

    /// The inbox position of a stored notification's send.
    pub fn inbox_seq(&self) -> Option<InboxSeq> {
        match self {
            Outgoing::Event { inbox, .. } => inbox.map(|stamp| stamp.seq),
            _ => None,
        }
    }

    /// The fields as one message body (`name:len:value` each, the value's
    /// length in bytes): what a subscription message carries after the
    /// entry's id and epoch, so that it needs no read of the stream.
    pub fn body(&self, origin: Origin) -> Vec<u8> {
        let fields = self.fields(origin);
        let size = fields.iter().map(|(k, v)| k.len() + v.len() + 8).sum();
        let mut out = Vec::with_capacity(size);
        for (name, value) in fields {
            out.extend_from_slice(name.as_bytes());
            out.push(b':');
            out.extend_from_slice(value.len().to_string().as_bytes());
            out.push(b':');
            out.extend_from_slice(value.as_bytes());
        }
        out
    }
}

/// Reads [`Outgoing::body`]'s form back into fields; `None` if malformed.
#[allow(clippy::type_complexity)]
pub fn body_fields(mut body: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut fields = Vec::new();
    while !body.is_empty() {
        let colon = body.iter().position(|b| *b == b':')?;
        let (name, rest) = (&body[..colon], &body[colon + 1..]);
        let colon = rest.iter().position(|b| *b == b':')?;
        let len: usize = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
        let rest = &rest[colon + 1..];
        if name.is_empty() || rest.len() < len {
            return None;
        }
        fields.push((name.to_vec(), rest[..len].to_vec()));
        body = &rest[len..];
    }
    Some(fields)
}

fn field<'a>(fields: &'a [(Vec<u8>, Vec<u8>)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name.as_bytes())
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

/// Who appended the entry, if it says.
pub fn origin(fields: &[(Vec<u8>, Vec<u8>)]) -> Option<Origin> {
    field(fields, "u").and_then(Origin::decode)
}

/// Reads an entry's fields (`h` excluded); `None` if they are not an
/// entry this version writes.
pub fn decode(fields: &[(Vec<u8>, Vec<u8>)]) -> Option<Incoming> {
    let field = |name: &str| field(fields, name);
    match field("k")? {
        "o" => Some(Incoming::Marker),
        "g" => Some(Incoming::Gap),
        "d" => Some(Incoming::Kick {
            target: decode_target(field("t")?)?,
        }),
        "e" => {
            let name = EventName::trusted(field("n")?.to_string()).ok()?;
            let inbox = match field("i") {
                Some(text) => Some(InboxStamp {
                    id: InboxId::from_event_id(&format!("x:{text}"))?,
                    seq: match field("q") {
                        Some(seq) => InboxSeq(seq.parse().ok()?),
                        None => InboxSeq(0),
                    },
                }),
                None => None,
            };
            Some(Incoming::Event {
                target: decode_target(field("t")?)?,
                event: Event::from_parts(name, field("d")?.to_string()),
                inbox,
            })
        }
        _ => None,
    }
}

/// `{"u": user}`, `{"s": session}`, `{"c": [client, …]}` or `{}` (all),
/// with `"t": ["key:value", …]` when tags narrow it.
pub fn encode_target(target: &Target) -> String {
    let mut out = match target.scope() {
        Scope::All => json!({}),
        Scope::User(user) => json!({ "u": user.as_str() }),
        Scope::Session(session) => json!({ "s": session.as_str() }),
        Scope::Clients(clients) => {
            json!({ "c": clients.iter().map(ToString::to_string).collect::<Vec<_>>() })
        }
    };
    if !target.tags().is_empty()
        && let Value::Object(map) = &mut out
    {
        let tags = target
            .tags()
            .iter()
            .map(|t| Value::String(t.to_string()))
            .collect();
        map.insert("t".into(), Value::Array(tags));
    }
    out.to_string()
}

pub fn decode_target(text: &str) -> Option<Target> {
    let value: Value = serde_json::from_str(text).ok()?;
    let map = value.as_object()?;
    let mut target = if let Some(user) = map.get("u") {
        Target::user(UserId::new(user.as_str()?))
    } else if let Some(session) = map.get("s") {
        Target::session(SessionId::new(session.as_str()?))
    } else if let Some(clients) = map.get("c") {
        let ids: Option<Vec<ClientId>> = clients
            .as_array()?
            .iter()
            .map(|c| c.as_str().and_then(ClientId::parse))
            .collect();
        Target::clients(ids?)
    } else {
        Target::all()
    };
    if let Some(tags) = map.get("t") {
        for tag in tags.as_array()? {
            target = target.with(Tag::parse(tag.as_str()?).ok()?);
        }
    }
    Some(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(outgoing: Outgoing) -> Option<Incoming> {
        let origin = Origin {
            publisher: 0xabc,
            seq: 7,
        };
        let fields: Vec<(Vec<u8>, Vec<u8>)> = outgoing
            .fields(origin)
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.into_bytes()))
            .collect();
        assert_eq!(super::origin(&fields), Some(origin));
        decode(&fields)
    }

    #[test]
    fn every_target_kind_survives_the_stream() {
        let targets = [
            Target::all(),
            Target::user(UserId::new("42")),
            Target::session(SessionId::new("s\"1")),
            Target::clients([ClientId::random(), ClientId::random()]),
            Target::tag("page", "home"),
            Target::user(UserId::new("7")).with_tag("page", "inbox"),
        ];
        for target in targets {
            assert_eq!(decode_target(&encode_target(&target)), Some(target));
        }
    }

    #[test]
    fn events_and_kicks_survive_the_stream() {
        let event = Event::text("invoice", "line 1\nline 2").unwrap();
        let inbox = InboxId::from_event_id("x:17").map(|id| InboxStamp {
            id,
            seq: InboxSeq(5),
        });
        let sent = Outgoing::Event {
            target: Target::user(UserId::new("42")),
            event: event.clone(),
            inbox,
        };
        assert_eq!(
            round_trip(sent),
            Some(Incoming::Event {
                target: Target::user(UserId::new("42")),
                event,
                inbox,
            })
        );
        let kick = Outgoing::Kick {
            target: Target::session(SessionId::new("s")),
        };
        assert_eq!(
            round_trip(kick),
            Some(Incoming::Kick {
                target: Target::session(SessionId::new("s"))
            })
        );
    }

    #[test]
    fn bodies_carry_the_fields_whatever_bytes_they_hold() {
        let origin = Origin {
            publisher: 0xabc,
            seq: 7,
        };
        let sent = Outgoing::Event {
            target: Target::user(UserId::new("a:1:b")),
            event: Event::text("n", "x:12:y\n\u{e9}").unwrap(),
            inbox: None,
        };
        let fields: Vec<(Vec<u8>, Vec<u8>)> = sent
            .fields(origin)
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.into_bytes()))
            .collect();
        assert_eq!(body_fields(&sent.body(origin)), Some(fields));
        assert_eq!(body_fields(b""), Some(Vec::new()));
        for bad in [&b"k:5:ab"[..], b"k:x:a", b":1:a", b"k1:a", b"k:-1:"] {
            assert_eq!(body_fields(bad), None, "{bad:?}");
        }
        assert_eq!(sent.route(), Route::User(&UserId::new("a:1:b")));
        let kick = Outgoing::Kick {
            target: Target::user(UserId::new("u")),
        };
        assert_eq!(kick.route(), Route::Wide);
    }

    #[test]
    fn foreign_entries_are_refused() {
        let entry = |pairs: &[(&str, &str)]| -> Vec<(Vec<u8>, Vec<u8>)> {
            pairs
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect()
        };
        assert_eq!(decode(&entry(&[("k", "x")])), None);
        assert_eq!(decode(&entry(&[("k", "e"), ("t", "{}")])), None);
        assert_eq!(decode(&entry(&[("k", "d"), ("t", "[")])), None);
        assert_eq!(
            decode(&entry(&[
                ("k", "e"),
                ("t", "{}"),
                ("n", "a\nb"),
                ("d", "1")
            ])),
            None
        );
        assert_eq!(decode(&entry(&[("k", "o")])), Some(Incoming::Marker));
    }
}
