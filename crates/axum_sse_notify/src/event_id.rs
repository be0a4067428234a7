//! Event ids: which history an event belongs to, and where in it.
//!
//! Written on the `id:` line of every event, `{epoch}-{major}-{minor}`,
//! e.g. `3f9a0c5d2b7e1a44-1742-0`. Clients treat it as opaque and hand it
//! back (`Last-Event-ID`) to resume. The **epoch** names one history: a
//! random number drawn when the history starts (a process today; the
//! identity of a Redis stream once several processes share one), so an id
//! from a previous run or a lost history is recognised as such and never
//! taken for a position in the current one. The **position** is totally
//! ordered within its epoch; this process counts `major` up from 1 with
//! `minor` 0, and a Redis stream's entry ids (`ms-seq`) fit the same two
//! numbers, so moving ids to Redis changes where they come from, not what
//! they mean.
//!
//! Beside them, when the server has an inbox, the **inbox position**
//! (`.{seq}`): how many stored notifications had been published when the
//! event was. It outlives the history (it lives in the database), so a
//! client coming back from a lost history (a restart) still says which
//! stored notifications it has: every one up to that number. And the
//! **inbox id** of a stored notification (`:{inbox id}`), the row the
//! browser marks read. In full: `{epoch}-{major}-{minor}.{seq}:{inbox id}`,
//! the last two parts optional ([`StreamId`]). Compiled for the browser
//! too (it reads inbox ids off events).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which history an id belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Epoch(u64);

impl Epoch {
    /// A fresh epoch: a random 64-bit number, so two histories never share
    /// one in practice.
    #[cfg(feature = "server")]
    pub fn random() -> Self {
        Epoch(rand::random::<u64>())
    }

    pub const fn from_u64(n: u64) -> Self {
        Epoch(n)
    }

    /// Sixteen hex digits, as on the `id:` line.
    pub fn to_hex(self) -> String {
        format!("{:016x}", self.0)
    }

    /// Reads [`Epoch::to_hex`]'s form back.
    pub fn parse_hex(text: &str) -> Option<Self> {
        if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(text, 16).ok().map(Epoch)
    }
}

/// A place in one history. Ordered: `major`, then `minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    pub major: u64,
    pub minor: u64,
}

impl Position {
    /// Before every event of a history.
    pub const START: Position = Position { major: 0, minor: 0 };

    pub const fn new(major: u64, minor: u64) -> Self {
        Position { major, minor }
    }

    /// The greatest position before this one (`START` stays `START`).
    pub const fn before(self) -> Self {
        match (self.major, self.minor) {
            (0, 0) => Position::START,
            (major, 0) => Position::new(major - 1, u64::MAX),
            (major, minor) => Position::new(major, minor - 1),
        }
    }
}

/// One event's id: its history and its place in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventId {
    pub epoch: Epoch,
    pub position: Position,
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:016x}-{}-{}",
            self.epoch.0, self.position.major, self.position.minor
        )
    }
}

/// The longest id accepted from a client (a real one is at most 58 bytes,
/// 100 with an inbox position and an inbox id).
pub const MAX_ID_LEN: usize = 128;

impl EventId {
    /// Reads the history part of an id a client sent back; `None` if it
    /// is not one of ours. The inbox position and inbox id, if any, are
    /// checked and left out (see [`StreamId::parse`]).
    pub fn parse(text: &str) -> Option<Self> {
        StreamId::parse(text).map(|id| id.event)
    }
}

/// How many stored notifications had been published (in the order they
/// were published, across restarts: the database counts) when an event
/// was. A client that holds an event with position `n` has every stored
/// notification for it numbered up to `n`, and none after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct InboxSeq(pub u64);

impl fmt::Display for InboxSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A stored notification as it is published: its row, and its number in
/// the publish order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxStamp {
    pub id: InboxId,
    pub seq: InboxSeq,
}

/// Everything an `id:` line says: the event's place in its history, the
/// inbox position when it was sent (servers with an inbox), and the inbox
/// row it carries (stored notifications).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamId {
    pub event: EventId,
    pub seq: Option<InboxSeq>,
    pub inbox: Option<InboxId>,
}

impl StreamId {
    pub fn new(event: EventId, seq: Option<InboxSeq>) -> Self {
        StreamId {
            event,
            seq,
            inbox: None,
        }
    }

    pub fn with_inbox(self, inbox: Option<InboxId>) -> Self {
        StreamId { inbox, ..self }
    }

    /// Reads an id a client sent back; `None` if it is not one of ours.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() > MAX_ID_LEN {
            return None;
        }
        let text = text.trim();
        let (text, inbox) = match text.split_once(':') {
            Some((id, inbox)) => (id, Some(InboxId(digits(inbox)?.try_into().ok()?))),
            None => (text, None),
        };
        let (text, seq) = match text.split_once('.') {
            Some((id, seq)) => (id, Some(InboxSeq(digits(seq)?))),
            None => (text, None),
        };
        let mut parts = text.splitn(3, '-');
        let epoch = Epoch::parse_hex(parts.next()?)?;
        let major = digits(parts.next()?)?;
        let minor = digits(parts.next()?)?;
        Some(StreamId {
            event: EventId {
                epoch,
                position: Position { major, minor },
            },
            seq,
            inbox,
        })
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.event, f)?;
        if let Some(seq) = self.seq {
            write!(f, ".{seq}")?;
        }
        if let Some(inbox) = self.inbox {
            write!(f, ":{inbox}")?;
        }
        Ok(())
    }
}

/// A decimal number, digits only (no sign, no spaces).
fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A stored notification's id: the database row's, the same for every
/// user who received it. Ids grow with time (newer notifications have
/// larger ids) and are never reused.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InboxId(pub i64);

impl fmt::Debug for InboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Display for InboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl InboxId {
    /// The inbox id a stream event carries: a persistent event's SSE id
    /// is `<event id>:<inbox id>` (the part before `:` is what the stream
    /// resumes from; the part after names the stored row).
    pub fn from_event_id(id: &str) -> Option<InboxId> {
        let (_, inbox) = id.rsplit_once(':')?;
        if inbox.is_empty() || !inbox.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        inbox.parse().ok().filter(|n| *n > 0).map(InboxId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_and_parse_back() {
        let id = EventId {
            epoch: Epoch(0x3f9a_0c5d_2b7e_1a44),
            position: Position::new(1742, 0),
        };
        assert_eq!(id.to_string(), "3f9a0c5d2b7e1a44-1742-0");
        assert_eq!(EventId::parse(&id.to_string()), Some(id));
        let redis_like = EventId {
            epoch: Epoch(1),
            position: Position::new(1_733_150_000_000, 7),
        };
        assert_eq!(EventId::parse(&redis_like.to_string()), Some(redis_like));
        assert_eq!(EventId::parse("3f9a0c5d2b7e1a44-1742-0:17"), Some(id));
        assert_eq!(EventId::parse("3f9a0c5d2b7e1a44-1742-0:"), None);
        assert_eq!(EventId::parse("3f9a0c5d2b7e1a44-1742-0:x"), None);
        assert_eq!(EventId::parse("3f9a0c5d2b7e1a44-1742-0.5:17"), Some(id));
        assert_eq!(EventId::parse("3f9a0c5d2b7e1a44-1742-0.:17"), None);
        assert_eq!(EventId::parse("3f9a0c5d2b7e1a44-1742-0.x"), None);
    }

    #[test]
    fn stream_ids_carry_the_inbox_position_and_row() {
        let event = EventId {
            epoch: Epoch(0x3f9a_0c5d_2b7e_1a44),
            position: Position::new(1742, 0),
        };
        let plain = StreamId::new(event, None);
        assert_eq!(plain.to_string(), "3f9a0c5d2b7e1a44-1742-0");
        let live = StreamId::new(event, Some(InboxSeq(0)));
        assert_eq!(live.to_string(), "3f9a0c5d2b7e1a44-1742-0.0");
        let stored = StreamId::new(event, Some(InboxSeq(31))).with_inbox(Some(InboxId(17)));
        assert_eq!(stored.to_string(), "3f9a0c5d2b7e1a44-1742-0.31:17");
        for id in [plain, live, stored] {
            assert_eq!(StreamId::parse(&id.to_string()), Some(id));
        }
        // Before inbox positions existed: a stored event without one.
        let old = StreamId::parse("3f9a0c5d2b7e1a44-1742-0:17").unwrap();
        assert_eq!((old.seq, old.inbox), (None, Some(InboxId(17))));
        assert_eq!(
            InboxId::from_event_id(&stored.to_string()),
            Some(InboxId(17))
        );
        assert_eq!(InboxId::from_event_id(&live.to_string()), None);
        assert_eq!(StreamId::parse("3f9a0c5d2b7e1a44-1742-0.1.2"), None);
        assert_eq!(StreamId::parse("3f9a0c5d2b7e1a44-1742-0.-1"), None);
    }

    #[test]
    fn anything_else_is_not_an_id() {
        for text in [
            "",
            "17",
            "1733150000000123",
            "3f9a0c5d2b7e1a44",
            "3f9a0c5d2b7e1a44-1",
            "3f9a0c5d2b7e1a44-1-",
            "3f9a0c5d2b7e1a44--1-0",
            "3f9a0c5d2b7e1a44-+1-0",
            "3f9a0c5d2b7e1a4-1-0",
            "zz9a0c5d2b7e1a44-1-0",
            "3f9a0c5d2b7e1a44-1-0-0",
            "3f9a0c5d2b7e1a44-99999999999999999999999-0",
        ] {
            assert_eq!(EventId::parse(text), None, "{text:?}");
        }
        assert_eq!(EventId::parse(&"1".repeat(MAX_ID_LEN + 1)), None);
    }

    #[test]
    fn positions_order_by_major_then_minor() {
        assert!(Position::new(1, 9) < Position::new(2, 0));
        assert!(Position::new(2, 0) < Position::new(2, 1));
        assert!(Position::START < Position::new(0, 1));
        assert_eq!(Position::new(5, 1).before(), Position::new(5, 0));
        assert_eq!(Position::new(5, 0).before(), Position::new(4, u64::MAX));
        assert_eq!(Position::START.before(), Position::START);
    }
}
