//! The publisher: appends queued sends to the stream, in order.
//!
//! Whatever is queued when it looks is sent as one pipeline (one round
//! trip for a burst). Each append runs [`APPEND`], which also keeps the
//! stream's epoch: a stream that was lost (Redis flushed or replaced, the
//! key deleted) is started afresh under a new epoch, so no process takes
//! the new entries for a continuation of the old ones. While Redis cannot
//! be reached, sends are delivered to this process's clients only (in
//! order, on the registry's own history), and the publisher reconnects.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use redis::aio::MultiplexedConnection;
use redis::{Pipeline, Script};
use tokio::sync::mpsc;

use super::BusState;
use crate::bus::Follow;
use crate::bus::backoff::Backoff;
use crate::bus::wire::{Origin, Outgoing};
use crate::event_id::Epoch;
use crate::metrics::BusLink;
use crate::registry::DisconnectReason;
use crate::target::Target;

/// The start of both scripts: the stream's epoch, a new one (and the
/// stream started afresh) if the stream or its epoch is gone.
macro_rules! epoch_or_new {
    () => {
        r"
local epoch = redis.call('GET', KEYS[2])
if (not epoch) or redis.call('EXISTS', KEYS[1]) == 0 then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], epoch)
end
"
    };
}

/// KEYS[1] the stream, KEYS[2] its epoch; ARGV[1] the epoch to use if a
/// new history starts, ARGV[2] the stream's length (`MAXLEN ~`),
/// ARGV[3..] the entry's fields and values. Returns the entry's id.
const APPEND: &str = concat!(
    epoch_or_new!(),
    r"local entry = {'XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'h', epoch}
for i = 3, #ARGV do entry[#entry + 1] = ARGV[i] end
return redis.call(unpack(entry))
"
);

/// [`APPEND`], then the entry published for live delivery (the
/// own-clients read): KEYS[3] the channel, KEYS[4] the highest inbox
/// position published so far (see [`crate::event_id::InboxSeq`]); ARGV[3]
/// the entry's fields as one body ([`crate::bus::wire::Outgoing::body`]),
/// kept as the entry's one field `b` beside its epoch `h` and sent as the
/// message `<entry id>\n<epoch>\n<body>` (a subscriber needs no read of
/// the stream, and the payload crosses to Redis once); ARGV[4] the
/// entry's inbox position or empty; ARGV[5..], if any, the fields one by
/// one, then stored so instead of `b` (the form versions before the
/// own-clients read can read: what a process with `bus.follow = all`
/// writes, for a rolling upgrade). One script, so that the entry's place
/// in the stream and in every subscriber's messages are the same order.
/// Every process runs it, whatever it reads itself: a process that reads
/// only its own clients' channels must receive what the others append.
const APPEND_PUBLISH: &str = concat!(
    epoch_or_new!(),
    r"if ARGV[4] ~= '' then
  local seq = tonumber(ARGV[4]) or 0
  if seq > (tonumber(redis.call('GET', KEYS[4]) or '0') or 0) then
    redis.call('SET', KEYS[4], ARGV[4])
  end
end
local entry = {'XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'h', epoch}
if #ARGV > 4 then
  for i = 5, #ARGV do entry[#entry + 1] = ARGV[i] end
else
  entry[#entry + 1] = 'b'
  entry[#entry + 1] = ARGV[3]
end
local id = redis.call(unpack(entry))
redis.call('PUBLISH', KEYS[3], id .. '\n' .. epoch .. '\n' .. ARGV[3])
return id
"
);

/// Sends written per round trip, at most.
const BATCH: usize = 256;

pub(super) fn script() -> Script {
    Script::new(APPEND)
}

/// Appends `outgoing` entries as one pipeline of [`APPEND_PUBLISH`]
/// calls.
pub(super) fn pipeline(state: &BusState, hash: &str, outgoing: &[(Origin, Outgoing)]) -> Pipeline {
    let mut pipe = redis::pipe();
    // The whole-stream read is also the upgrade path: entries in the form
    // the versions before can read (the payload then goes to Redis twice).
    let compatible = state.config.follow == Follow::All;
    for (origin, item) in outgoing {
        let cmd = pipe
            .cmd("EVALSHA")
            .arg(hash)
            .arg(4)
            .arg(&state.keys.stream)
            .arg(&state.keys.epoch)
            .arg(state.keys.channel(item.route()))
            .arg(&state.keys.inbox_seq)
            .arg(Epoch::random().to_hex())
            .arg(state.config.history_len.max(1))
            .arg(item.body(*origin))
            .arg(
                item.inbox_seq()
                    .map(|seq| seq.to_string())
                    .unwrap_or_default(),
            );
        if compatible {
            for (name, value) in item.fields(*origin) {
                cmd.arg(name).arg(value);
            }
        }
    }
    pipe
}

/// The publisher's side of [`Origin`]: its random id and its count.
struct Counter {
    publisher: u64,
    seq: u64,
}

impl Counter {
    fn stamp(&mut self, items: &mut Vec<Outgoing>, batch: &mut Vec<(Origin, Outgoing)>) {
        for item in items.drain(..) {
            self.seq += 1;
            let origin = Origin {
                publisher: self.publisher,
                seq: self.seq,
            };
            batch.push((origin, item));
        }
    }
}

/// Kicks applied locally while Redis was out of reach, kept to be
/// appended once it is back (a kick is harmless twice), at most.
const KICKS_KEPT: usize = 10_000;

/// What was done without Redis, to be told to the other processes.
#[derive(Default)]
struct Offline {
    /// Sends reached this process's clients only.
    sent: bool,
    kicks: Vec<Target>,
}

pub(super) async fn run(state: Arc<BusState>, mut queued: mpsc::Receiver<Outgoing>) {
    let mut backoff = Backoff::new();
    let mut counter = Counter {
        publisher: state.publisher,
        seq: 0,
    };
    let mut offline = Offline::default();
    let mut taken = Vec::with_capacity(BATCH);
    // Taken from the queue, not yet confirmed appended.
    let mut batch: Vec<(Origin, Outgoing)> = Vec::with_capacity(BATCH);
    let mut connections = 0u64;
    loop {
        let connected = match state.connect(true).await {
            Ok(mut conn) => match Script::new(APPEND_PUBLISH).load_async(&mut conn).await {
                Ok(hash) => Some((conn, hash)),
                Err(e) => {
                    tracing::warn!(error = %e, "bus: cannot load the append script");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, shard = %crate::partition::shard_address(&state.url), "bus: Redis unreachable; local clients only until it is back");
                None
            }
        };
        let Some((mut conn, hash)) = connected else {
            state.publisher_up.store(false, Ordering::Relaxed);
            // What could not be confirmed, and what comes while we wait,
            // reaches local clients at least; except what the reader has
            // read back (appended, but its reply lost with the
            // connection): that has reached them already.
            let unread = batch
                .drain(..)
                .filter(|(origin, _)| !state.has_read(*origin))
                .map(|(_, item)| item);
            deliver_locally(&state, unread, &mut offline);
            let delay = tokio::time::sleep(backoff.next_delay());
            tokio::pin!(delay);
            loop {
                tokio::select! {
                    () = &mut delay => break,
                    () = state.stopped() => return,
                    n = queued.recv_many(&mut taken, BATCH) => {
                        if n == 0 {
                            return;
                        }
                        deliver_locally(&state, taken.drain(..), &mut offline);
                    }
                }
            }
            continue;
        };
        tracing::info!("bus: publishing to Redis");
        state.publisher_up.store(true, Ordering::Relaxed);
        connections += 1;
        if connections > 1 {
            state.reconnected(BusLink::Publisher);
        }
        // First, what the others must know about the time without Redis.
        let mut told = Vec::new();
        if std::mem::take(&mut offline.sent) {
            told.push(Outgoing::Gap);
        }
        told.extend(
            offline
                .kicks
                .drain(..)
                .map(|target| Outgoing::Kick { target }),
        );
        if !told.is_empty() {
            let mut stamped = Vec::new();
            counter.stamp(&mut told, &mut stamped);
            stamped.append(&mut batch);
            batch = stamped;
        }
        let go_on = publish_until_error(
            &state,
            &mut conn,
            &hash,
            &mut queued,
            (&mut counter, &mut taken, &mut batch),
            &mut backoff,
        )
        .await;
        if !go_on {
            return;
        }
        state.publisher_up.store(false, Ordering::Relaxed);
        tokio::select! {
            () = tokio::time::sleep(backoff.next_delay()) => {}
            () = state.stopped() => return,
        }
    }
}

/// How often an idle publisher checks its connection, so that a Redis
/// that went away is noticed (and reconnected to) before the next send.
const IDLE_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Publishes until the connection fails (returns true: reconnect, with
/// the unconfirmed sends left in the batch) or every sender is gone.
async fn publish_until_error(
    state: &BusState,
    conn: &mut MultiplexedConnection,
    hash: &str,
    queued: &mut mpsc::Receiver<Outgoing>,
    (counter, taken, batch): (
        &mut Counter,
        &mut Vec<Outgoing>,
        &mut Vec<(Origin, Outgoing)>,
    ),
    backoff: &mut Backoff,
) -> bool {
    loop {
        if batch.is_empty() {
            // Not stopped by the bus's stop: what was sent before a
            // shutdown still goes out.
            tokio::select! {
                n = queued.recv_many(taken, BATCH) => {
                    if n == 0 {
                        return false;
                    }
                    counter.stamp(taken, batch);
                }
                () = tokio::time::sleep(IDLE_CHECK) => {
                    if let Err(e) = redis::cmd("PING").query_async::<String>(conn).await {
                        tracing::warn!(error = %e, "bus: connection lost; reconnecting");
                        return true;
                    }
                    backoff.reset();
                    continue;
                }
            }
        }
        match pipeline(state, hash, batch)
            .query_async::<Vec<redis::Value>>(conn)
            .await
        {
            Ok(_) => {
                batch.clear();
                backoff.reset();
                state.publisher_up.store(true, Ordering::Relaxed);
            }
            Err(e) => {
                // Some may have been appended (a pipeline runs each of its
                // commands; a refused one does not stop the others): the
                // whole batch is appended again, with the same counts, on
                // a new connection, and readers drop the copies.
                tracing::warn!(error = %e, sends = batch.len(), "bus: append failed; reconnecting");
                return true;
            }
        }
    }
}

fn deliver_locally(state: &BusState, items: impl Iterator<Item = Outgoing>, offline: &mut Offline) {
    for item in items {
        match item {
            Outgoing::Event {
                target,
                event,
                inbox,
            } => {
                offline.sent = true;
                // Checked for size when it was queued.
                state
                    .registry
                    .send_in(state.partition, &target, &event, inbox);
            }
            Outgoing::Kick { target } => {
                state
                    .registry
                    .disconnect_matching(&target, DisconnectReason::Kicked);
                if offline.kicks.len() < KICKS_KEPT {
                    offline.kicks.push(target);
                }
            }
            Outgoing::Gap => offline.sent = true,
        }
    }
}
