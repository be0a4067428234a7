//! The recent published events, for replay after a reconnect.
//!
//! One ordered log of what was *published* (not of deliveries): each entry
//! is the event's position, its target and its framed bytes (the same
//! `Bytes` the live receivers got). A reconnecting client walks the log
//! after its last id and takes what its target rules select. The log is
//! bounded three ways, all configurable: entries (`sse.history_len`), age
//! (`sse.history_age`) and bytes (`sse.history_max_bytes`); trimming drops
//! from the front, O(1) per entry. What was trimmed is remembered as one
//! position, so a client asking for anything before it is told (reset)
//! rather than silently skipped.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::event_id::{Epoch, EventId, InboxId, InboxSeq, Position, StreamId};
use crate::target::{Recipient, Target};

/// Entries examined per look at the log, so that one replay never holds
/// the lock (which sends need) for long.
const SCAN_STEP: usize = 1024;

struct Published {
    position: Position,
    /// The inbox position right after this event.
    seq: InboxSeq,
    /// The inbox row it carries, if stored.
    inbox: Option<InboxId>,
    at: Instant,
    target: Target,
    frame: Bytes,
}

/// Why a client cannot resume from the id it sent: the stream says so
/// with an `sse-reset` event instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetReason {
    /// Not an id of ours.
    Unparsable,
    /// From another history: a previous run of the server, or a history
    /// that was lost.
    OtherEpoch,
    /// Older than the oldest event the history still holds.
    TooOld,
    /// The history the client was following was replaced: the shared
    /// stream was lost or could not be followed without a gap (the bus
    /// was unreachable), so events may have been missed.
    HistoryLost,
}

impl ResetReason {
    /// Every reason, in declaration order (their numbers).
    pub const ALL: [ResetReason; 4] = [
        Self::Unparsable,
        Self::OtherEpoch,
        Self::TooOld,
        Self::HistoryLost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unparsable => "unparsable_id",
            Self::OtherEpoch => "other_epoch",
            Self::TooOld => "too_old",
            Self::HistoryLost => "history_lost",
        }
    }
}

/// One step of a replay.
pub(super) enum Step {
    /// These frames (possibly none yet), then look again from `cursor`.
    More { frames: Option<Bytes>, count: u64 },
    /// The replay is complete: these were the last frames.
    Done { frames: Option<Bytes>, count: u64 },
    /// Events after the cursor were trimmed before they could be replayed.
    Lost,
}

pub(super) struct History {
    epoch: Epoch,
    /// Positions come from the shared stream (the Redis bus), not from
    /// this process.
    following: bool,
    /// The last position handed out (`START` before the first event).
    last: Position,
    entries: VecDeque<Published>,
    /// Every position up to this one is gone (`START`: nothing trimmed).
    trimmed_to: Position,
    /// The inbox position at `trimmed_to`.
    trimmed_seq: InboxSeq,
    /// How many stored notifications were published so far, as far as
    /// this history knows (`None`: the server has no inbox). Unlike the
    /// epoch it survives a restart of the history: it counts rows in the
    /// database.
    seq: Option<InboxSeq>,
    bytes: usize,
    max_len: usize,
    max_age: Duration,
    max_bytes: usize,
}

impl History {
    pub(super) fn new(epoch: Epoch, max_len: usize, max_age: Duration, max_bytes: usize) -> Self {
        History {
            epoch,
            following: false,
            last: Position::START,
            entries: VecDeque::new(),
            trimmed_to: Position::START,
            trimmed_seq: InboxSeq::default(),
            seq: None,
            bytes: 0,
            max_len,
            max_age,
            max_bytes,
        }
    }

    pub(super) fn id(&self, position: Position) -> EventId {
        EventId {
            epoch: self.epoch,
            position,
        }
    }

    /// The id of the event at `position`, with the inbox position now.
    pub(super) fn stream_id(&self, position: Position) -> StreamId {
        StreamId::new(self.id(position), self.seq)
    }

    /// The inbox position now (`None`: no inbox).
    pub(super) fn seq(&self) -> Option<InboxSeq> {
        self.seq
    }

    /// Where the inbox's publish order stands when the inbox starts (read
    /// from the database): every position this history holds so far is
    /// at it. Only the first call counts; after it the position moves
    /// with the stored notifications this history records (a later read
    /// of the database could be ahead of rows still on their way through
    /// the bus).
    pub(super) fn start_seq(&mut self, seq: InboxSeq) {
        if self.seq.is_some() {
            return;
        }
        self.seq = Some(seq);
        self.trimmed_seq = self.trimmed_seq.max(seq);
        for entry in &mut self.entries {
            entry.seq = entry.seq.max(seq);
        }
    }

    /// The inbox rows of the stored events after `after`: what a replay
    /// from there sends again, so a read of the inbox leaves them out.
    pub(super) fn stored_after(&self, after: Position) -> Vec<InboxId> {
        let start = self.entries.partition_point(|e| e.position <= after);
        self.entries
            .range(start..)
            .filter_map(|e| e.inbox)
            .collect()
    }

    /// Moves the inbox position to `seq` if that is further: stored
    /// notifications published by several processes may reach a history
    /// slightly out of order, and a position never goes back.
    pub(super) fn advance_seq(&mut self, seq: InboxSeq) {
        self.seq = Some(self.seq.map_or(seq, |now| now.max(seq)));
    }

    /// The inbox position right after the event at `position` (which
    /// [`History::resume_point`] accepted).
    pub(super) fn seq_at(&self, position: Position) -> Option<InboxSeq> {
        self.seq?;
        let after = self.entries.partition_point(|e| e.position <= position);
        Some(
            match after.checked_sub(1).and_then(|i| self.entries.get(i)) {
                Some(entry) => entry.seq,
                None => self.trimmed_seq,
            },
        )
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // used by the Redis bus
    pub(super) fn epoch(&self) -> Epoch {
        self.epoch
    }

    pub(super) fn is_following(&self) -> bool {
        self.following
    }

    /// Starts over as another history that is complete from `last` on:
    /// everything before it counts as trimmed (a client resuming from an
    /// earlier id of `epoch` is told it cannot).
    pub(super) fn restart(&mut self, epoch: Epoch, last: Position, following: bool) {
        self.epoch = epoch;
        self.following = following;
        self.last = last;
        self.trimmed_to = last;
        self.trimmed_seq = self.seq.unwrap_or_default();
        self.entries.clear();
        self.bytes = 0;
    }

    /// The newest position handed out: a client registered now receives
    /// every event after it.
    pub(super) fn last(&self) -> Position {
        self.last
    }

    /// Moves the newest position to `position` if it is further (no
    /// entry: see [`crate::Registry::read_up_to`]).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(super) fn skip_to(&mut self, position: Position) {
        self.last = self.last.max(position);
    }

    /// The position of the next event. Call [`History::record`] with it
    /// before handing out another.
    pub(super) fn next_position(&self) -> Position {
        Position::new(self.last.major + 1, 0)
    }

    /// Keeps the event just published at `position`.
    pub(super) fn record(
        &mut self,
        position: Position,
        target: Target,
        frame: Bytes,
        inbox: Option<InboxId>,
        now: Instant,
    ) {
        self.last = position;
        self.bytes += frame.len();
        self.entries.push_back(Published {
            position,
            seq: self.seq.unwrap_or_default(),
            inbox,
            at: now,
            target,
            frame,
        });
        self.trim(now);
    }

    /// Every position up to this one is gone (after trimming what is due).
    pub(super) fn floor(&mut self, now: Instant) -> Position {
        self.trim(now);
        self.trimmed_to
    }

    /// Where a client that last saw `id` resumes, or why it cannot.
    pub(super) fn resume_point(
        &mut self,
        id: &EventId,
        now: Instant,
    ) -> Result<Position, ResetReason> {
        if id.epoch != self.epoch || id.position > self.last {
            // A position this history never handed out is not ours either.
            return Err(if id.epoch == self.epoch {
                ResetReason::Unparsable
            } else {
                ResetReason::OtherEpoch
            });
        }
        self.trim(now);
        if id.position < self.trimmed_to {
            return Err(ResetReason::TooOld);
        }
        Ok(id.position)
    }

    /// Whether a replay after `after` would hand out an event published
    /// before `since` (unix ms: when the resuming sign-in began). A
    /// shared stream's positions are its entry ids, whose major is the
    /// append time in ms; this process's own positions are counters, so
    /// the time it recorded is used.
    pub(super) fn reaches_before(&self, after: Position, since: u64, now: Instant) -> bool {
        let start = self.entries.partition_point(|e| e.position <= after);
        let Some(first) = self.entries.get(start) else {
            return false;
        };
        if self.following {
            return first.position.major < since;
        }
        let age = Duration::from_millis(super::unix_millis_now().saturating_sub(since));
        // A sign-in older than the clock's reach began before every entry.
        now.checked_sub(age).is_some_and(|began| first.at < began)
    }

    /// The frames after `*cursor` up to `until` that `recipient` should
    /// have received, joined, at most about `max_bytes` of them; moves the
    /// cursor past what it examined.
    pub(super) fn replay(
        &mut self,
        cursor: &mut Position,
        until: Position,
        recipient: &Recipient<'_>,
        max_bytes: usize,
        now: Instant,
    ) -> Step {
        self.trim(now);
        if *cursor < self.trimmed_to {
            return Step::Lost;
        }
        let start = self.entries.partition_point(|e| e.position <= *cursor);
        let mut out = BytesMut::new();
        let mut count = 0;
        let mut examined = 0;
        for entry in self.entries.range(start..) {
            if entry.position > until {
                break;
            }
            *cursor = entry.position;
            examined += 1;
            if entry.target.selects(recipient) {
                out.extend_from_slice(&entry.frame);
                count += 1;
            }
            if out.len() >= max_bytes || examined >= SCAN_STEP {
                let frames = (count > 0).then(|| out.freeze());
                return if *cursor >= until {
                    Step::Done { frames, count }
                } else {
                    Step::More { frames, count }
                };
            }
        }
        *cursor = until;
        Step::Done {
            frames: (count > 0).then(|| out.freeze()),
            count,
        }
    }

    /// Drops entries beyond the length and byte budgets and older than the
    /// age limit, oldest first.
    fn trim(&mut self, now: Instant) {
        while let Some(front) = self.entries.front() {
            let over = self.entries.len() > self.max_len
                || self.bytes > self.max_bytes
                || now.saturating_duration_since(front.at) > self.max_age;
            if !over {
                break;
            }
            if let Some(gone) = self.entries.pop_front() {
                self.bytes -= gone.frame.len();
                self.trimmed_to = gone.position;
                self.trimmed_seq = gone.seq;
            }
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::{ClientId, SessionId, UserId};

    fn history(max_len: usize, max_bytes: usize) -> History {
        History::new(
            Epoch::from_u64(7),
            max_len,
            Duration::from_secs(600),
            max_bytes,
        )
    }

    fn publish(h: &mut History, target: Target, text: &str, now: Instant) -> Position {
        let position = h.next_position();
        h.record(position, target, Bytes::from(text.to_string()), None, now);
        position
    }

    fn all_of(h: &mut History, after: Position, who: &Recipient<'_>, now: Instant) -> String {
        let mut cursor = after;
        let until = h.last();
        let mut text = String::new();
        loop {
            match h.replay(&mut cursor, until, who, 8, now) {
                Step::More { frames, .. } => {
                    text.push_str(std::str::from_utf8(&frames.unwrap_or_default()).unwrap())
                }
                Step::Done { frames, .. } => {
                    text.push_str(std::str::from_utf8(&frames.unwrap_or_default()).unwrap());
                    return text;
                }
                Step::Lost => return "LOST".into(),
            }
        }
    }

    #[test]
    fn a_replay_is_what_the_target_rules_select_in_order() {
        let now = Instant::now();
        let mut h = history(100, 1 << 20);
        let (ann, bob) = (UserId::new("ann"), UserId::new("bob"));
        let session = SessionId::new("s1");
        let start = publish(&mut h, Target::user(ann.clone()), "a0;", now);
        publish(&mut h, Target::user(bob.clone()), "b1;", now);
        publish(&mut h, Target::all(), "all2;", now);
        publish(&mut h, Target::tag("page", "home"), "home3;", now);
        publish(&mut h, Target::user(ann.clone()), "a4;", now);
        let who = Recipient {
            client: ClientId::random(),
            user: &ann,
            session: &session,
            tags: &[],
        };
        assert_eq!(all_of(&mut h, start, &who, now), "all2;a4;");
        assert_eq!(all_of(&mut h, Position::START, &who, now), "a0;all2;a4;");
        let last = h.last();
        assert_eq!(all_of(&mut h, last, &who, now), "");
    }

    #[test]
    fn each_position_knows_the_inbox_position_after_it() {
        let now = Instant::now();
        let mut h = history(4, 1 << 20);
        assert_eq!(h.seq_at(Position::START), None, "no inbox, no position");
        let before = publish(&mut h, Target::all(), "0;", now);
        // The database's position, read when the inbox starts: what the
        // history holds so far is at it (a restarted process's start).
        h.start_seq(InboxSeq(4));
        assert_eq!(h.seq_at(Position::START), Some(InboxSeq(4)));
        assert_eq!(h.seq_at(before), Some(InboxSeq(4)));
        h.start_seq(InboxSeq(40));
        assert_eq!(h.seq(), Some(InboxSeq(4)), "only the first read counts");
        h.advance_seq(InboxSeq(5));
        let live = publish(&mut h, Target::all(), "a;", now);
        h.advance_seq(InboxSeq(6));
        let stored = publish(&mut h, Target::all(), "b;", now);
        // Out of order (another process's, late): never back.
        h.advance_seq(InboxSeq(4));
        let later = publish(&mut h, Target::all(), "c;", now);
        assert_eq!(h.seq_at(live), Some(InboxSeq(5)));
        assert_eq!(h.seq_at(stored), Some(InboxSeq(6)));
        assert_eq!(h.seq_at(later), Some(InboxSeq(6)));
        assert_eq!(h.stored_after(before), Vec::<InboxId>::new());
        // Trimmed entries leave their position behind.
        h.advance_seq(InboxSeq(9));
        publish(&mut h, Target::all(), "d;", now);
        assert_eq!(h.floor(now), before);
        publish(&mut h, Target::all(), "e;", now);
        assert_eq!(h.floor(now), live);
        assert_eq!(h.seq_at(live), Some(InboxSeq(5)));
        // A restart keeps the inbox position: it counts database rows.
        h.restart(Epoch::from_u64(99), Position::new(1, 0), false);
        assert_eq!(h.seq(), Some(InboxSeq(9)));
        assert_eq!(h.seq_at(Position::new(1, 0)), Some(InboxSeq(9)));
    }

    #[test]
    fn trimming_is_remembered_and_reported() {
        let now = Instant::now();
        let mut h = history(3, 1 << 20);
        let first = publish(&mut h, Target::all(), "1;", now);
        for n in 2..=5 {
            publish(&mut h, Target::all(), &format!("{n};"), now);
        }
        assert_eq!(h.len(), 3);
        // 1 and 2 are gone: a client that saw only 1 missed 2.
        assert_eq!(h.resume_point(&h.id(first), now), Err(ResetReason::TooOld));
        let second = Position::new(first.major + 1, 0);
        assert_eq!(h.resume_point(&h.id(second), now), Ok(second));
        let other = EventId {
            epoch: Epoch::from_u64(8),
            position: second,
        };
        assert_eq!(h.resume_point(&other, now), Err(ResetReason::OtherEpoch));
        let future = h.id(Position::new(99, 0));
        assert_eq!(h.resume_point(&future, now), Err(ResetReason::Unparsable));
    }

    #[test]
    fn the_byte_and_age_budgets_trim_too() {
        let now = Instant::now();
        let mut h = history(100, 10);
        for _ in 0..5 {
            publish(&mut h, Target::all(), "abcd", now);
        }
        assert_eq!(h.len(), 2, "10 bytes hold two 4-byte frames");
        let mut aged = History::new(Epoch::from_u64(1), 100, Duration::from_secs(5), 1 << 20);
        publish(&mut aged, Target::all(), "old", now);
        publish(
            &mut aged,
            Target::all(),
            "new",
            now + Duration::from_secs(4),
        );
        let later = now + Duration::from_secs(6);
        assert!(aged.resume_point(&aged.id(Position::START), later).is_err());
        assert_eq!(aged.len(), 1);
    }

    #[test]
    fn a_replay_overtaken_by_trimming_is_lost_not_skipped() {
        let now = Instant::now();
        let mut h = history(4, 1 << 20);
        for n in 0..4 {
            publish(&mut h, Target::all(), &format!("{n};"), now);
        }
        let user = UserId::new("u");
        let session = SessionId::new("s");
        let who = Recipient {
            client: ClientId::random(),
            user: &user,
            session: &session,
            tags: &[],
        };
        let mut cursor = Position::START;
        let until = h.last();
        // Read one frame, then the log moves on by more than it holds.
        assert!(matches!(
            h.replay(&mut cursor, until, &who, 1, now),
            Step::More { count: 1, .. }
        ));
        for n in 4..9 {
            publish(&mut h, Target::all(), &format!("{n};"), now);
        }
        assert!(matches!(
            h.replay(&mut cursor, until, &who, 1, now),
            Step::Lost
        ));
    }
}
