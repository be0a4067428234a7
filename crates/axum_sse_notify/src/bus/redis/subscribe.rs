//! The own-clients read ([`crate::bus::Follow::Own`]): a process reads
//! only what its own clients need.
//!
//! Every entry the publisher appends is also published, with its id and
//! epoch, on a channel: a user's own channel for an event addressed to
//! that user, the wide channel for everything else. This task holds one
//! subscription connection: the wide channel always, and the channel of
//! each user this process holds a stream of (subscribed when the first
//! stream asks, dropped `bus.unfollow_after` after the last one ended).
//! Adding processes then adds nothing to what each one reads.
//!
//! Exactness rests on three things. Messages arrive in the stream's order
//! (one Redis, one connection, the append and the publish in one script),
//! so one cursor tells a message already applied. A new user is followed
//! with a barrier: subscribe, read the stream's newest id `n`, then a
//! `PING` on the subscription connection, whose answer comes after every
//! message published before it; from then on this process's history
//! holds every entry up to `n` that its clients need, and every later
//! entry of the user arrives: `n` is the user's *floor*, and a resume
//! from before it reads the gap from the stream (the older read). And a
//! lost subscription is repaired from the stream itself: on reconnect the
//! task reads what it missed after its cursor (`XRANGE`), keeping what
//! its clients need, or, when the stream no longer holds its cursor,
//! starts over and every client is reset, as the whole-stream read does.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use redis::Value;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use tokio::sync::{mpsc, oneshot};

/// Requests to follow: at most one per stream being admitted (admission
/// bounds them), so the channel needs no bound of its own.
pub(super) type Requests = mpsc::UnboundedReceiver<Request>;

use super::apply::apply;
use super::followed::Followed;
use super::read::{query, sync};
use super::reply::{self, Entry, entry_id};
use super::{BusState, timed_out};
use crate::bus::backoff::Backoff;
use crate::bus::wire;
use crate::event_id::{Epoch, EventId, InboxSeq, Position};
use crate::metrics::BusLink;
use crate::target::{Target, UserId};

/// A stream asking to be followed: its user (`None`: only the barrier,
/// for a client that comes from a process that was ahead).
pub(super) struct Request {
    pub(super) user: Option<UserId>,
    pub(super) done: oneshot::Sender<()>,
}

/// Requests served per barrier, at most.
const BATCH: usize = 1024;

/// Channels per `SUBSCRIBE`/`UNSUBSCRIBE` command, at most.
const CHANNELS_PER_COMMAND: usize = 512;

/// How often the task looks at a quiet subscription (is Redis there, is
/// the stream the same one) and at users no stream holds any more.
const TICK: Duration = Duration::from_secs(1);

/// The stream's epoch, its newest entry id (only the id: a script, so
/// that Redis sends no entry) and the highest inbox position published,
/// read together.
const HEAD: &str = "local e = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1) \
                    local id = false if e[1] then id = e[1][1] end \
                    return {redis.call('GET', KEYS[2]), id, redis.call('GET', KEYS[3])}";

/// Why a session ended without failing.
enum Ended {
    /// The handle is gone.
    Closed,
    /// Nobody here follows the partition any more (partitioned bus only):
    /// its connections are let go until a stream of it comes.
    Idle,
}

pub(super) async fn run(state: Arc<BusState>, mut requests: Requests) {
    // With several partitions, one that none of this process's streams
    // stands in is not followed at all: no connection, nothing read.
    let lazy = state.registry.partitions().count() > 1;
    let mut dormant = lazy;
    // The requests that woke a dormant partition, answered by its barrier.
    let mut waking = Vec::new();
    let mut backoff = Backoff::new();
    let mut cursor: Option<EventId> = None;
    let mut connections = 0u64;
    // The last session failed (a reconnect, as the figures count it).
    let mut failed = false;
    loop {
        if dormant {
            // Nothing to read, so nothing missed: up, as far as anyone
            // asks (waking stays up: nothing is unreachable then), and a
            // stream's request wakes it (accepted, so sent).
            let _ = lock(&state).accept();
            state.reader_up.store(true, Ordering::Relaxed);
            state.reader_read.send_replace(true);
            state.dormant.store(true, Ordering::Relaxed);
            tokio::select! {
                request = requests.recv() => match request {
                    Some(request) => waking.push(request),
                    None => return,
                },
                () = state.stopped() => return,
            }
            state.dormant.store(false, Ordering::Relaxed);
        }
        // Until a session has started at the head, the next one starts
        // there too (see `start_at_head`).
        let mut activating = std::mem::take(&mut dormant) || (lazy && cursor.is_none());
        let mut followed = false;
        let session = async {
            let mut conn = state.connect(true).await?;
            let pubsub =
                tokio::time::timeout(state.config.timeout, state.client.get_async_pubsub())
                    .await
                    .map_err(|_| timed_out())??;
            let (mut sink, messages) = pubsub.split();
            bounded(&state, sink.subscribe(&state.keys.wide)).await?;
            let mut subscribed = HashSet::new();
            let users: Vec<UserId> = {
                let mut followed = lock(&state);
                followed.accept()
            };
            subscribe(&state, &mut sink, &mut subscribed, users).await?;
            if activating {
                start_at_head(&state, &mut conn, &mut cursor, failed).await?;
            } else {
                let wants = |target: &Target| lock(&state).wants(target);
                if sync(&state, &mut conn, &mut cursor, &wants).await? {
                    recover(&state, &mut conn, &mut cursor).await?;
                }
            }
            let mut session = Session {
                state: &state,
                conn,
                sink,
                messages,
                subscribed,
                synced: false,
            };
            session.up_to_head(&mut cursor).await?;
            session.synced = true;
            activating = false;
            state.reader_up.store(true, Ordering::Relaxed);
            state.reader_read.send_replace(true);
            followed = true;
            connections += 1;
            if connections > 1 && (!lazy || failed) {
                state.reconnected(BusLink::Reader);
            }
            failed = false;
            // Their users were subscribed before that barrier.
            for request in waking.drain(..) {
                let _ = request.done.send(());
            }
            if lazy {
                tracing::debug!(partition = state.partition, "bus: following a partition");
            } else {
                tracing::info!("bus: following this process's own clients' channels");
            }
            session.serve(&mut requests, &mut cursor, lazy).await
        };
        let result: redis::RedisResult<Ended> = tokio::select! {
            result = session => result,
            () = state.stopped() => return,
        };
        match result {
            Ok(Ended::Closed) => return,
            Ok(Ended::Idle) => {
                tracing::debug!(
                    partition = state.partition,
                    "bus: no stream here stands in this partition; not following it"
                );
                // What it held is not kept up any more: let it go.
                if let Some(at) = cursor {
                    state.registry.forget_before(state.partition, at);
                }
                dormant = true;
                backoff.reset();
                continue;
            }
            Err(e) => {
                state.reader_up.store(false, Ordering::Relaxed);
                failed = true;
                tracing::warn!(error = %e, "bus: cannot follow the channels; reconnecting");
            }
        }
        // Whoever waits is let go (their users are followed by the next
        // connection, from the cursor on); nobody new waits.
        {
            let _followed = {
                let mut followed = lock(&state);
                followed.refuse();
                followed
            };
            waking.clear();
            while requests.try_recv().is_ok() {}
        }
        if activating {
            // Failed before it reached the head: the next one starts there.
            cursor = None;
        }
        if followed {
            backoff.reset();
        }
        // Users whose streams ended meanwhile are not followed again; and
        // a partition nobody here stands in any more goes dormant (not
        // down: nothing here needs it), to start at the head when a
        // stream of it comes. Looked at each tick of the wait.
        let until = tokio::time::Instant::now() + backoff.next_delay();
        loop {
            if lazy && quiet(&state, &waking, &requests) {
                cursor = None;
                dormant = true;
                break;
            }
            if !lazy {
                lock(&state).drop_idle(Instant::now(), state.config.unfollow_after);
            }
            let now = tokio::time::Instant::now();
            if now >= until {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep_until(until.min(now + TICK)) => {}
                () = state.stopped() => return,
            }
        }
    }
}

/// After a failure: drops the users no stream holds any more, and says
/// whether nothing here stands in the partition now (nobody followed,
/// nobody waiting).
fn quiet(state: &BusState, waking: &[Request], requests: &Requests) -> bool {
    let mut followed = lock(state);
    followed.drop_idle(Instant::now(), state.config.unfollow_after);
    followed.len() == 0 && waking.is_empty() && requests.is_empty()
}

/// Starts following a partition from its stream's newest entry, without
/// reading any entry: nothing here stood in it while it was not followed,
/// so no live stream is owed what came before, and a resume from before
/// reads it from the stream (the older read). Streams that registered
/// while this failed before (their requests were let go: see `run`) did
/// not follow the partition meanwhile and may have missed events or kicks:
/// they are ended as drained, and their browsers resume at once, exactly,
/// from their last id. A partition whose stream was never opened is
/// opened as the first read of a process does.
async fn start_at_head(
    state: &BusState,
    conn: &mut MultiplexedConnection,
    cursor: &mut Option<EventId>,
    after_failure: bool,
) -> redis::RedisResult<()> {
    let head = head(state, conn).await?;
    match head.epoch {
        None => {
            *cursor = None;
            let wants = |target: &Target| lock(state).wants(target);
            sync(state, conn, cursor, &wants).await?;
        }
        Some(epoch) => {
            let at = EventId {
                epoch,
                position: head.newest.unwrap_or(Position::START),
            };
            state.registry.forget_before(state.partition, at);
            if let Some(seq) = head.inbox_seq {
                state.registry.advance_inbox_seq(state.partition, seq);
            }
            *cursor = Some(at);
        }
    }
    // Only a failure lets streams in without following (a plain wake has
    // none to end, and need not look through every stream).
    let drained = if after_failure {
        state.registry.drain_partition(state.partition)
    } else {
        0
    };
    if drained > 0 {
        tracing::warn!(
            partition = state.partition,
            drained,
            "bus: streams registered while their partition could not be followed were ended; they resume"
        );
    }
    Ok(())
}

/// One subscription connection's life.
struct Session<'a> {
    state: &'a BusState,
    conn: MultiplexedConnection,
    sink: PubSubSink,
    messages: PubSubStream,
    subscribed: HashSet<UserId>,
    /// Set after the first catch-up: before it, a message of another
    /// history than the one `sync` found is one sent before the stream
    /// was replaced (dropped); after it, histories only move forward, so
    /// such a message starts the new one (as the stream read does).
    synced: bool,
}

impl Session<'_> {
    /// Applies messages and serves requests until the connection fails
    /// (`Err`), the handle is gone, or (`lazy`: a partitioned bus) no
    /// stream here stands in the partition any more.
    async fn serve(
        &mut self,
        requests: &mut Requests,
        cursor: &mut Option<EventId>,
        lazy: bool,
    ) -> redis::RedisResult<Ended> {
        let state = self.state;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut heard = false;
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                message = self.messages.next() => {
                    let Some(message) = message else {
                        return Err(lost());
                    };
                    on_message(state, message.get_payload_bytes(), cursor, true)?;
                    // A bounded share, then back to the requests and the
                    // tick: a flood of messages must not starve them.
                    drain(&mut self.messages, state, cursor, true, Until::Applied(SERVE_BATCH)).await?;
                    moved(state, *cursor);
                    heard = true;
                }
                n = requests.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        return Ok(Ended::Closed);
                    }
                    self.barrier(&mut batch, cursor).await?;
                }
                _ = tick.tick() => {
                    if !std::mem::take(&mut heard) {
                        self.check(cursor).await?;
                    }
                    self.unfollow_idle().await?;
                    // Checked under the lock that adds users: one added
                    // after this sends a request, which wakes the task.
                    if lazy && lock(state).len() == 0 && requests.is_empty() {
                        return Ok(Ended::Idle);
                    }
                }
            }
        }
    }

    /// Subscribes the new users among `batch`, then brings this process
    /// up to the stream's newest entry (see the module's doc), which
    /// becomes the new users' floor, and answers every request.
    async fn barrier(
        &mut self,
        batch: &mut Vec<Request>,
        cursor: &mut Option<EventId>,
    ) -> redis::RedisResult<()> {
        let state = self.state;
        let users: Vec<UserId> = batch
            .iter()
            .filter_map(|r| r.user.clone())
            .filter(|u| !self.subscribed.contains(u))
            .collect();
        subscribe(state, &mut self.sink, &mut self.subscribed, users).await?;
        self.up_to_head(cursor).await?;
        for request in batch.drain(..) {
            let _ = request.done.send(());
        }
        Ok(())
    }

    /// Reads the stream's head, then `PING`s through the subscription:
    /// once every message before the answer is applied, this process
    /// holds every entry its subscribed users and wide targets need up
    /// to that head. The cursor, the history's newest position and the
    /// inbox position move there, and subscribed users without a floor
    /// get it.
    async fn up_to_head(&mut self, cursor: &mut Option<EventId>) -> redis::RedisResult<()> {
        let state = self.state;
        let head = head(state, &mut self.conn).await?;
        let _: Value = bounded(state, self.sink.ping()).await?;
        // Every message before the answer, or (under a flood, where the
        // channel is never empty) up to one at or past the head: messages
        // come in the stream's order, so everything before it is applied.
        let until = match (head.epoch, head.newest) {
            (Some(epoch), Some(newest)) => Until::Reached(EventId {
                epoch,
                position: newest,
            }),
            _ => Until::Empty,
        };
        drain(&mut self.messages, state, cursor, self.synced, until).await?;
        if let (Some(at), Some(epoch), Some(newest)) = (cursor.as_mut(), head.epoch, head.newest)
            && at.epoch == epoch
        {
            at.position = at.position.max(newest);
            if let Some(seq) = head.inbox_seq {
                state.registry.advance_inbox_seq(state.partition, seq);
            }
        }
        moved(state, *cursor);
        settle_floors(state, &self.subscribed, *cursor);
        Ok(())
    }

    /// A quiet subscription: is Redis still there (a `PING` through it),
    /// and is the stream still the one followed?
    async fn check(&mut self, cursor: &mut Option<EventId>) -> redis::RedisResult<()> {
        let state = self.state;
        let _: Value = bounded(state, self.sink.ping()).await?;
        drain(
            &mut self.messages,
            state,
            cursor,
            true,
            Until::Applied(SERVE_BATCH),
        )
        .await?;
        moved(state, *cursor);
        // The epoch alone: a stream emptied or deleted under the same
        // epoch is followed on (its next append opens a new history).
        let head = head(state, &mut self.conn).await?;
        if let Some(at) = *cursor
            && head.epoch != Some(at.epoch)
        {
            tracing::warn!("bus: the stream was replaced");
            return Err(lost());
        }
        Ok(())
    }

    /// Drops the users no stream has held for `bus.unfollow_after`.
    async fn unfollow_idle(&mut self) -> redis::RedisResult<()> {
        let state = self.state;
        let now = Instant::now();
        let gone = lock(state).drop_idle(now, state.config.unfollow_after);
        for chunk in gone.chunks(CHANNELS_PER_COMMAND) {
            let channels: Vec<String> = chunk.iter().map(|u| state.keys.user_channel(u)).collect();
            bounded(state, self.sink.unsubscribe(channels)).await?;
            for user in chunk {
                self.subscribed.remove(user);
            }
        }
        Ok(())
    }
}

fn lock(state: &BusState) -> std::sync::MutexGuard<'_, Followed> {
    state
        .followed
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// See [`Followed::settle`].
fn settle_floors(state: &BusState, subscribed: &HashSet<UserId>, cursor: Option<EventId>) {
    if let Some(cursor) = cursor {
        lock(state).settle(subscribed, cursor);
    }
}

async fn subscribe(
    state: &BusState,
    sink: &mut PubSubSink,
    subscribed: &mut HashSet<UserId>,
    users: Vec<UserId>,
) -> redis::RedisResult<()> {
    for chunk in users.chunks(CHANNELS_PER_COMMAND) {
        let channels: Vec<String> = chunk.iter().map(|u| state.keys.user_channel(u)).collect();
        bounded(state, sink.subscribe(channels)).await?;
        subscribed.extend(chunk.iter().cloned());
    }
    Ok(())
}

/// A subscription command, bounded by `bus.timeout`.
async fn bounded<T>(
    state: &BusState,
    command: impl Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    tokio::time::timeout(state.config.timeout, command)
        .await
        .map_err(|_| timed_out())?
}

fn lost() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "the subscription connection or the stream was lost",
    ))
}

/// What [`HEAD`] read.
struct Head {
    epoch: Option<Epoch>,
    newest: Option<Position>,
    inbox_seq: Option<InboxSeq>,
}

/// The stream's epoch and newest entry's position (each if it has one),
/// with the highest inbox position published.
async fn head(state: &BusState, conn: &mut MultiplexedConnection) -> redis::RedisResult<Head> {
    let script = redis::Script::new(HEAD);
    let mut invocation = script.prepare_invoke();
    invocation
        .key(&state.keys.stream)
        .key(&state.keys.epoch)
        .key(&state.keys.inbox_seq);
    let (epoch, newest, seq): (Option<String>, Option<String>, Option<String>) =
        tokio::time::timeout(state.config.timeout, invocation.invoke_async(conn))
            .await
            .map_err(|_| timed_out())??;
    Ok(Head {
        epoch: epoch.as_deref().and_then(Epoch::parse_hex),
        newest: newest.as_deref().and_then(reply::position),
        inbox_seq: seq.and_then(|s| s.parse().ok()).map(InboxSeq),
    })
}

/// The cursor moved: the history's newest position follows it (entries
/// stepped over, kicks and markers included, so that a position this
/// process has read past is one a client may resume from), and waiters
/// are woken.
fn moved(state: &BusState, cursor: Option<EventId>) {
    if let Some(at) = cursor {
        state.registry.read_up_to(state.partition, at);
    }
    state.read_head.send_replace(cursor);
}

/// How far a drain goes (never waiting for a message).
#[derive(Debug, Clone, Copy)]
enum Until {
    /// Until none is left.
    Empty,
    /// Until none is left or the cursor is at or past this entry.
    Reached(EventId),
    /// Until none is left or this many more are applied.
    Applied(usize),
}

/// Messages applied per turn of the serving loop, at most.
const SERVE_BATCH: usize = 256;

/// Applies the messages already received, as far as `until` says.
/// Outside tokio's task budget: a budget spent would make the channel
/// look empty while messages wait in it, and a barrier would then move
/// the cursor past them.
async fn drain(
    messages: &mut PubSubStream,
    state: &BusState,
    cursor: &mut Option<EventId>,
    new_histories: bool,
    until: Until,
) -> redis::RedisResult<()> {
    let reached = |cursor: &Option<EventId>| match (until, cursor) {
        (Until::Reached(head), Some(at)) => at.epoch == head.epoch && at.position >= head.position,
        _ => false,
    };
    if reached(cursor) {
        return Ok(());
    }
    let mut applied = 0;
    each_ready(messages, |payload| {
        on_message(state, payload, cursor, new_histories)?;
        applied += 1;
        Ok(match until {
            Until::Empty => true,
            Until::Reached(_) => !reached(cursor),
            Until::Applied(most) => applied < most,
        })
    })
    .await
}

/// Calls `apply` on the messages already received, without waiting for
/// more and whatever the task's budget, until none is left or `apply`
/// says stop (`false`).
async fn each_ready(
    messages: &mut PubSubStream,
    mut apply: impl FnMut(&[u8]) -> redis::RedisResult<bool>,
) -> redis::RedisResult<()> {
    tokio::task::unconstrained(async {
        while let Some(Some(message)) = messages.next().now_or_never() {
            if !apply(message.get_payload_bytes())? {
                break;
            }
        }
        Ok(())
    })
    .await
}

/// One message: `<entry id>\n<epoch>\n<fields>`. One already applied
/// (at or before the cursor, same history) is dropped; one that cannot
/// be read is stepped over, as the stream read does. One of another
/// history starts it when `new_histories` (see [`Session::synced`]), else
/// is dropped.
fn on_message(
    state: &BusState,
    payload: &[u8],
    cursor: &mut Option<EventId>,
    new_histories: bool,
) -> redis::RedisResult<()> {
    let Some(entry) = message_entry(payload) else {
        tracing::warn!("bus: a channel message it cannot read; skipped");
        if let Some(metrics) = state.registry.metrics() {
            metrics.bus_entry_skipped();
        }
        return Ok(());
    };
    if let (Some(at), Some(epoch)) = (*cursor, entry.epoch) {
        if at.epoch != epoch && !new_histories {
            tracing::debug!("bus: dropped a message of the stream before it was replaced");
            return Ok(());
        }
        if at.epoch == epoch && entry.position <= at.position {
            return Ok(());
        }
    }
    apply(state, cursor, entry, &|_| true);
    Ok(())
}

fn message_entry(payload: &[u8]) -> Option<Entry> {
    let mut parts = payload.splitn(3, |b| *b == b'\n');
    let id = std::str::from_utf8(parts.next()?).ok()?;
    let epoch = Epoch::parse_hex(std::str::from_utf8(parts.next()?).ok()?)?;
    let fields = wire::body_fields(parts.next()?)?;
    Some(Entry {
        position: reply::position(id)?,
        epoch: Some(epoch),
        fields,
    })
}

/// Reads what was appended after the cursor while this process was not
/// subscribed, keeping what its clients need (pages of [`RECOVER_PAGE`]).
async fn recover(
    state: &BusState,
    conn: &mut MultiplexedConnection,
    cursor: &mut Option<EventId>,
) -> redis::RedisResult<()> {
    loop {
        let Some(at) = *cursor else {
            return Ok(());
        };
        let reply: Value = query(
            state,
            conn,
            redis::cmd("XRANGE")
                .arg(&state.keys.stream)
                .arg(format!("({}", entry_id(at.position)))
                .arg("+")
                .arg("COUNT")
                .arg(RECOVER_PAGE),
            Duration::ZERO,
        )
        .await?;
        let (entries, _) = reply::entries(&reply);
        let read = entries.len();
        for entry in entries {
            let wants = |target: &Target| lock(state).wants(target);
            apply(state, cursor, entry, &wants);
        }
        if read < RECOVER_PAGE {
            return Ok(());
        }
    }
}

/// Entries per page when reading what a lost subscription missed.
const RECOVER_PAGE: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::wire::{Origin, Outgoing};
    use crate::event::Event;

    #[test]
    fn messages_carry_the_entry_they_announce() {
        let origin = Origin {
            publisher: 1,
            seq: 2,
        };
        let item = Outgoing::Event {
            target: Target::user(UserId::new("u\n1")),
            event: Event::text("n", "a\nb").unwrap(),
            inbox: None,
        };
        let mut payload = b"1700000000000-3\n00000000000000ff\n".to_vec();
        payload.extend_from_slice(&item.body(origin));
        let entry = message_entry(&payload).unwrap();
        assert_eq!(entry.position, Position::new(1_700_000_000_000, 3));
        assert_eq!(entry.epoch, Some(Epoch::from_u64(255)));
        assert_eq!(wire::origin(&entry.fields), Some(origin));
        assert!(matches!(
            wire::decode(&entry.fields),
            Some(wire::Incoming::Event { .. })
        ));
        for bad in [&b""[..], b"1-0\nff\n", b"x\n00000000000000ff\n", b"1-0"] {
            assert!(message_entry(bad).is_none(), "{bad:?}");
        }
    }

    /// After a `PING` answered, every message published before it is
    /// applied, however many: the task budget does not cut the drain
    /// short (it would, at 128, and a barrier would skip the rest).
    #[tokio::test]
    async fn a_drain_after_a_ping_applies_every_message_before_it() {
        let url = std::env::var("TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
        let client = redis::Client::open(url).expect("url");
        let channel = format!("drain-test-{}", rand::random::<u64>());
        let (mut sink, mut messages) = client.get_async_pubsub().await.expect("redis").split();
        sink.subscribe(&channel).await.expect("subscribe");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        let mut burst = redis::pipe();
        for i in 0..1000 {
            burst.cmd("PUBLISH").arg(&channel).arg(i).ignore();
        }
        burst.query_async::<()>(&mut conn).await.expect("publish");
        let _: Value = sink.ping().await.expect("ping");
        let mut got = Vec::new();
        each_ready(&mut messages, |payload| {
            got.push(String::from_utf8_lossy(payload).into_owned());
            Ok(true)
        })
        .await
        .expect("drain");
        let sent: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
        assert_eq!(got, sent);
    }
}
