//! A client's side of the registry: where its stream starts
//! ([`Resume`]), and the handle its stream reads from
//! ([`Registration`]): an opening `sse-reset` if any, then what it missed
//! from the history (or, starting afresh, the inbox backlog the route
//! set), then its live queue, in batches.

use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::history::{ResetReason, Step};
use super::lifecycle::ClientGuard;
use super::link::Next;
use super::reason::DisconnectReason;
use crate::event::{EventName, write_frame};
use crate::event_id::{EventId, InboxId, InboxSeq, Position, StreamId};
use crate::metrics::ReplaySource;
use crate::reset::{StoredResumed, StreamReset};
use crate::target::{ClientId, Recipient, SessionId, Tag, UserId};

/// Where a client's stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resume<'a> {
    /// From now: events published after the connect.
    #[default]
    Fresh,
    /// After the event with this id (as the client sent it back in
    /// `Last-Event-ID`): what it missed is replayed first. With `client`,
    /// the id its previous connection had: if that connection belonged to
    /// the same session and ended recently (or is still registered, its
    /// end not noticed yet: it is replaced), the new one takes the id
    /// back, and events sent to that client id are replayed too.
    After {
        last_event_id: &'a str,
        client: Option<ClientId>,
    },
}

/// What a resuming client still has to be sent from the history, and the
/// attributes targeting looks at (a copy of its registry entry's).
pub(super) struct Replay {
    pub(super) cursor: Position,
    pub(super) until: Position,
    pub(super) user: UserId,
    pub(super) session: SessionId,
    pub(super) tags: Box<[Tag]>,
}

/// Stored notifications a resuming stream reads from the inbox before its
/// live events: those published after the client's inbox position
/// (`after`) up to where the stream's live part starts (`upto`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGap {
    pub after: InboxSeq,
    pub upto: InboxSeq,
    /// Why the history could not resume the stream: it opens with an
    /// `sse-reset` that says the stored part was resumed. `None`: the
    /// history resumes it; only stored notifications from before its
    /// position are missing (the client left during a resume).
    pub reset: Option<ResetReason>,
    /// Inbox rows the history's replay sends anyway (on a shared stream,
    /// rows can reach a process out of their numbers' order): left out
    /// of the inbox read.
    pub replayed: Vec<InboxId>,
}

/// A client admitted by [`Registry::register`](super::Registry::register): the receiving end of its
/// queue, and the guard that unregisters it when dropped. The SSE route
/// turns it into a stream (`Registration::poll_batch`); benchmarks and
/// tests read the queue directly ([`Registration::try_next`]).
pub struct Registration {
    pub(super) id: ClientId,
    pub(super) guard: ClientGuard,
    /// The stream is complete from this event on: the `connected` event
    /// carries it as its id, so a reconnect always has a place to resume.
    pub(super) start: EventId,
    /// The inbox position the stream starts at (`None`: no inbox).
    pub(super) start_seq: Option<InboxSeq>,
    /// The stored part of a resume, for the route to read from the inbox.
    /// Boxed: most streams never have one.
    pub(super) stored: Option<Box<StoredGap>>,
    /// Written before anything else: an `sse-reset`, and (from
    /// [`Registration::set_backlog`]) the inbox backlog.
    pub(super) opening: Option<Bytes>,
    pub(super) replay: Option<Replay>,
    /// Started without a position (fresh, or reset): the inbox backlog
    /// belongs at its start.
    pub(super) fresh: bool,
    /// Its stream wrote its last frame (a drained stream's `sse-drain`).
    pub(crate) finished: bool,
    /// Publishers may write its events themselves ([`Registration::go_direct`]).
    pub(super) direct: bool,
    /// Live copies of what the backlog held, to drop. Boxed: most streams
    /// never have one, and each stream's size is what an idle one costs.
    pub(super) dedupe: Option<Box<Dedupe>>,
}

/// The inbox ids a stream already sent in its backlog. Live events
/// carrying one of them are dropped while the switch-over can still
/// produce duplicates: until each was seen once, or `until`.
pub(super) struct Dedupe {
    ids: Vec<InboxId>,
    until: Instant,
}

/// How long after the backlog a live copy of one of its notifications can
/// still arrive: the time between a commit and its publish (the writer's,
/// or a transactional caller's, or the relay's next pass).
const DEDUPE_WINDOW: Duration = Duration::from_secs(30);

impl Dedupe {
    /// Whether to drop `frame`; forgets ids once seen, and everything once
    /// the window has passed.
    fn drops(slot: &mut Option<Box<Dedupe>>, frame: &[u8]) -> bool {
        let Some(dedupe) = slot.as_mut() else {
            return false;
        };
        if Instant::now() > dedupe.until {
            *slot = None;
            return false;
        }
        let Some(id) = inbox_id_of(frame) else {
            return false;
        };
        let Some(at) = dedupe.ids.iter().position(|seen| *seen == id) else {
            return false;
        };
        dedupe.ids.swap_remove(at);
        if dedupe.ids.is_empty() {
            *slot = None;
        }
        true
    }
}

/// The inbox id on a frame's `id:` line (`id: <event id>:<inbox id>`).
fn inbox_id_of(frame: &[u8]) -> Option<InboxId> {
    let line = frame.strip_prefix(b"id: ")?;
    let end = line.iter().position(|b| *b == b'\n')?;
    InboxId::from_event_id(std::str::from_utf8(&line[..end]).ok()?)
}

impl Registration {
    pub fn id(&self) -> ClientId {
        self.id
    }

    /// The id after which this stream holds every event meant for it.
    pub fn start(&self) -> EventId {
        self.start
    }

    /// [`Registration::start`] with the inbox position: the `connected`
    /// event's id.
    pub fn start_id(&self) -> StreamId {
        StreamId::new(self.start, self.start_seq)
    }

    /// The stored notifications to read from the inbox before live events
    /// (see [`StoredGap`]).
    pub fn stored_gap(&self) -> Option<&StoredGap> {
        self.stored.as_deref()
    }

    /// The stored part of a resume, read: `frames` (its `sse-reset` if the
    /// history could not resume, the inbox summary, the notifications)
    /// open the stream; live copies of `ids` are dropped.
    pub fn set_stored(&mut self, frames: Bytes, ids: Vec<InboxId>) {
        self.stored = None;
        self.opening = None;
        self.set_backlog(frames, ids);
    }

    /// The stored part of a resume could not be read: the stream opens
    /// with a plain `sse-reset` (the page refetches its state).
    pub fn stored_unavailable(&mut self) {
        if let Some(gap) = self.stored.take() {
            let reason = gap.reset.unwrap_or(ResetReason::HistoryLost);
            if gap.reset.is_none() {
                self.guard.registry().count_reset(reason, 1);
            }
            self.opening = Some(reset_frame(reason, self.start_id()));
        }
    }

    /// Whether the stream started without a position to resume from (no
    /// `Last-Event-ID`, or one it could not resume from): the app's inbox
    /// backlog belongs at its start.
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// Adds the inbox backlog to the opening (after an `sse-reset`, if
    /// any), before live events; live copies of the inbox ids it holds
    /// are dropped.
    pub fn set_backlog(&mut self, frames: Bytes, ids: Vec<InboxId>) {
        self.guard
            .registry()
            .count_replayed(ReplaySource::Inbox, ids.len() as u64);
        self.opening = Some(match self.opening.take() {
            Some(reset) => {
                let mut both = BytesMut::with_capacity(reset.len() + frames.len());
                both.extend_from_slice(&reset);
                both.extend_from_slice(&frames);
                both.freeze()
            }
            None => frames,
        });
        self.dedupe = (!ids.is_empty()).then(|| {
            Box::new(Dedupe {
                ids,
                until: Instant::now() + DEDUPE_WINDOW,
            })
        });
    }

    /// With the Redis bus: what the client missed before the oldest event
    /// this process's history holds, read from the stream, written before
    /// the replay; `None` (it could not be read) gives an `sse-reset`
    /// instead. Nothing if the stream already starts with a reset.
    pub(crate) fn set_older(&mut self, frames: Option<Bytes>) {
        if self.opening.is_some() {
            return;
        }
        let registry = self.guard.registry();
        self.opening = match frames {
            Some(frames) if frames.is_empty() => None,
            Some(frames) => {
                // Frames end with a blank line; data never holds one.
                let events = frames.windows(2).filter(|w| w == b"\n\n").count();
                registry.count_replayed(ReplaySource::Bus, events as u64);
                Some(frames)
            }
            None => {
                registry.count_reset(ResetReason::TooOld, 1);
                Some(reset_frame(ResetReason::TooOld, self.start_id()))
            }
        };
    }

    /// Gives the stream its span: its log lines (the end included) carry
    /// the span's fields.
    pub fn set_span(&mut self, span: tracing::Span) {
        self.guard.set_span(span);
    }

    /// The configured `retry:` (a drained stream is told a jittered one).
    pub(crate) fn retry(&self) -> Duration {
        self.guard.registry().config().retry
    }

    /// Runs `f` inside the stream's span, if it has one.
    pub fn in_span<T>(&self, f: impl FnOnce() -> T) -> T {
        self.guard.in_span(f)
    }

    /// Lets publishers write the stream's live events to its socket
    /// themselves from now on, until `until` (Unix ms), once the stream
    /// has nothing of its own to send before them (an opening, a replay,
    /// backlog duplicates to drop): they go out without a task wake-up.
    /// Only a server that gives out its sockets' write turns makes use of
    /// it (see [`crate::socket::WatchedSocket::try_claim`]).
    pub(crate) fn go_direct(&mut self, until: u64) {
        if self
            .dedupe
            .as_ref()
            .is_some_and(|dedupe| Instant::now() > dedupe.until)
        {
            // Its window passed with no live copy left to drop.
            self.dedupe = None;
        }
        if self.direct
            || self.opening.is_some()
            || self.replay.is_some()
            || self.dedupe.is_some()
            || self.stored.is_some()
        {
            return;
        }
        self.guard.link().allow_direct(until);
        self.direct = true;
    }

    pub(crate) fn is_direct(&self) -> bool {
        self.direct
    }

    /// Whether the stream opens with an `sse-reset`.
    pub(crate) fn opens_with_reset(&self) -> bool {
        self.opening.is_some()
    }

    /// The next framed event, if one is queued.
    pub fn try_next(&mut self) -> Option<Bytes> {
        loop {
            let frame = self.guard.link().queue.pop()?;
            if !Dedupe::drops(&mut self.dedupe, &frame) {
                return Some(frame);
            }
        }
    }

    /// What the stream writes next: the end, if one was decided (it wins
    /// over queued events); else the next queued event, as the shared
    /// frame (never copied: `lean_serve`'s direct path gathers the frames
    /// ready into one `writev`, hyper its own way), counted as sent; a replay in
    /// chunks of at most about `max_bytes`; else `Pending`, with `cx`'s
    /// waker kept for the next event or the end.
    pub(crate) fn poll_batch(&mut self, cx: &mut Context<'_>, max_bytes: usize) -> Poll<Next> {
        if let Some(reason) = self.guard.link().reason() {
            return Poll::Ready(Next::End(reason));
        }
        if let Some(frame) = self.opening.take() {
            return Poll::Ready(Next::Write(frame));
        }
        if self.replay.is_some() {
            match self.replay_batch(max_bytes) {
                Replayed::Frames(frames) => return Poll::Ready(Next::Write(frames)),
                Replayed::Reset(frame) => {
                    self.replay = None;
                    return Poll::Ready(Next::Write(frame));
                }
                Replayed::Done => self.replay = None,
            }
        }
        let link = self.guard.link();
        let dedupe = &mut self.dedupe;
        let frame = loop {
            match link.poll_next(cx) {
                Poll::Ready(Next::Write(frame)) if Dedupe::drops(dedupe, &frame) => continue,
                Poll::Ready(Next::Write(frame)) => break frame,
                other => return other,
            }
        };
        self.guard.registry().count_sent(link);
        Poll::Ready(Next::Write(frame))
    }

    /// The next replayed frames. A replay the history trimmed under it
    /// ends with an `sse-reset`.
    fn replay_batch(&mut self, max_bytes: usize) -> Replayed {
        let registry = self.guard.registry();
        let Some(replay) = self.replay.as_mut() else {
            return Replayed::Done;
        };
        let recipient = Recipient {
            client: self.id,
            user: &replay.user,
            session: &replay.session,
            tags: &replay.tags,
        };
        loop {
            // The lock is taken per step, so sends are not held up by a
            // long replay.
            let partition = registry.partitions.of(&replay.user);
            let step = registry.lock_history(partition).replay(
                &mut replay.cursor,
                replay.until,
                &recipient,
                max_bytes,
                Instant::now(),
            );
            let (frames, count, done) = match step {
                Step::More { frames, count } => (frames, count, false),
                Step::Done { frames, count } => (frames, count, true),
                Step::Lost => {
                    let since = {
                        let history = registry.lock_history(partition);
                        StreamId::new(history.id(replay.until), history.seq_at(replay.until))
                    };
                    tracing::warn!(client = %self.id, "replay overtaken by the history's trimming");
                    registry.count_reset(ResetReason::TooOld, 1);
                    return Replayed::Reset(reset_frame(ResetReason::TooOld, since));
                }
            };
            registry.count_sent_n(self.guard.link(), count);
            registry.count_replayed(ReplaySource::History, count);
            match frames {
                Some(frames) => return Replayed::Frames(frames),
                None if done => return Replayed::Done,
                None => continue,
            }
        }
    }

    /// Ends the connection with `seen` (how the stream saw it end) unless
    /// the registry had already decided a reason; returns the reason kept.
    pub(crate) fn finish(&self, seen: DisconnectReason) -> DisconnectReason {
        self.guard.finish(seen)
    }

    /// The reason the connection must end, once one was decided.
    pub fn end_reason(&self) -> Option<DisconnectReason> {
        self.guard.link().reason()
    }
}

/// One step of a replay, as the stream sees it.
enum Replayed {
    Frames(Bytes),
    /// The history lost events before they could be replayed.
    Reset(Bytes),
    Done,
}

/// `sse-reset`: the stream cannot replay what the client missed; it is
/// complete from `since` on (also its id, so a later reconnect resumes
/// from there). The page should refetch its state.
pub(crate) fn reset_frame(reason: ResetReason, since: StreamId) -> Bytes {
    reset_frame_with(reason, since, None)
}

/// [`reset_frame`], saying (`stored`: how many stored notifications
/// follow, how many more were left out as beyond the limit) that the
/// stored notifications the client missed were resumed: only events that
/// were not stored may be missing.
pub(crate) fn reset_frame_with(
    reason: ResetReason,
    since: StreamId,
    stored: Option<(u64, u64)>,
) -> Bytes {
    let since = since.to_string();
    let reset = StreamReset {
        reason: reason.as_str().to_string(),
        since: since.clone(),
        stored: stored.map(|(resumed, skipped)| StoredResumed { resumed, skipped }),
    };
    let data = serde_json::to_string(&reset).unwrap_or_default();
    let mut out = Vec::new();
    write_frame(
        &mut out,
        Some(&since),
        &EventName::reserved("sse-reset"),
        &data,
    );
    Bytes::from(out)
}
