//! The label values of the SSE layer's series: each a fixed list, so that
//! the number of series never depends on traffic.

use crate::target::{Scope, Target};

/// The kind of a send's target: the `target` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    All,
    User,
    Session,
    Clients,
    /// Everyone (or a scope) narrowed by tags.
    Tag,
}

impl TargetKind {
    pub const ALL: [TargetKind; 5] = [
        TargetKind::All,
        TargetKind::User,
        TargetKind::Session,
        TargetKind::Clients,
        TargetKind::Tag,
    ];

    pub fn of(target: &Target) -> Self {
        if !target.tags().is_empty() {
            return TargetKind::Tag;
        }
        match target.scope() {
            Scope::All => TargetKind::All,
            Scope::User(_) => TargetKind::User,
            Scope::Session(_) => TargetKind::Session,
            Scope::Clients(_) => TargetKind::Clients,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::All => "all",
            TargetKind::User => "user",
            TargetKind::Session => "session",
            TargetKind::Clients => "clients",
            TargetKind::Tag => "tag",
        }
    }
}

/// Why a request was refused: the `cause` label of `sse_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 503: the process holds `sse.max_clients` streams.
    TooManyClients,
    /// 429: `sse.per_user_max`.
    TooManyForUser,
    /// 429: `sse.per_address_max`.
    TooManyForAddress,
    /// 503: shutting down or draining.
    ShuttingDown,
    /// 503: the bus's queue is full.
    BusBusy,
    /// 429: a user's sends beyond their rate.
    SendRate,
    /// 401: the stream's sign-in ended before it was registered.
    SessionEnded,
}

impl Refusal {
    pub const ALL: [Refusal; 7] = [
        Refusal::TooManyClients,
        Refusal::TooManyForUser,
        Refusal::TooManyForAddress,
        Refusal::ShuttingDown,
        Refusal::BusBusy,
        Refusal::SendRate,
        Refusal::SessionEnded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::TooManyClients => "too_many_clients",
            Refusal::TooManyForUser => "too_many_connections",
            Refusal::TooManyForAddress => "too_many_connections_from_address",
            Refusal::ShuttingDown => "shutting_down",
            Refusal::BusBusy => "bus_busy",
            Refusal::SendRate => "send_rate",
            Refusal::SessionEnded => "session_ended",
        }
    }

    pub fn status(self) -> &'static str {
        match self {
            Refusal::TooManyForUser | Refusal::TooManyForAddress | Refusal::SendRate => "429",
            Refusal::SessionEnded => "401",
            _ => "503",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Where replayed events came from: the `source` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplaySource {
    /// This process's history (`Last-Event-ID`).
    History,
    /// The bus's stream, for a resume older than the history.
    Bus,
    /// Unread inbox notifications at the start of a fresh stream.
    Inbox,
}

impl ReplaySource {
    pub const ALL: [ReplaySource; 3] = [
        ReplaySource::History,
        ReplaySource::Bus,
        ReplaySource::Inbox,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReplaySource::History => "history",
            ReplaySource::Bus => "bus",
            ReplaySource::Inbox => "inbox",
        }
    }
}

/// One of the bus's Redis connections: the `link` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusLink {
    Publisher,
    Reader,
}

/// The inbox's database operations, timed: the `op` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbOp {
    /// The inbox writer's group commit.
    InboxCommit,
    /// An inbox page, the unread count, a backlog.
    InboxRead,
    /// Marking read.
    InboxMark,
    /// The relay's look for unpublished rows.
    InboxRelay,
}

impl DbOp {
    pub const ALL: [DbOp; 4] = [
        DbOp::InboxCommit,
        DbOp::InboxRead,
        DbOp::InboxMark,
        DbOp::InboxRelay,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DbOp::InboxCommit => "inbox_commit",
            DbOp::InboxRead => "inbox_read",
            DbOp::InboxMark => "inbox_mark",
            DbOp::InboxRelay => "inbox_relay",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::{Tag, UserId};

    #[test]
    fn target_kinds_name_the_scope_or_the_tag() {
        let tag = Tag::parse("room:1").unwrap();
        assert_eq!(TargetKind::of(&Target::all()), TargetKind::All);
        assert_eq!(TargetKind::of(&Target::all().with(tag)), TargetKind::Tag);
        assert_eq!(
            TargetKind::of(&Target::user(UserId::new("u"))),
            TargetKind::User
        );
    }

    #[test]
    fn every_refusal_has_one_slot_and_a_status() {
        for (i, refusal) in Refusal::ALL.iter().enumerate() {
            assert_eq!(refusal.index(), i);
            assert!(matches!(refusal.status(), "401" | "429" | "503"));
        }
    }
}
