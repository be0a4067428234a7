//! What a registry entry and its stream share: the queue, the reason the
//! connection must end (set once, by whoever decides first), and the
//! socket, so that ending a stream also frees a write stuck on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;

use super::queue::{EventQueue, Full};
use super::reason::DisconnectReason;
use crate::socket::{ClaimedWrite, WatchedSocket};

/// State shared between a registry entry and its stream: the queue, the
/// reason the connection must end (set once, by whoever decides first),
/// and one waker for both, so that a stream waits on a single thing.
pub(crate) struct ClientLink {
    /// 0 while open, else a [`DisconnectReason`].
    reason: AtomicU8,
    /// Until when (Unix ms) a publisher may write this stream's events
    /// itself through its socket's write turn; 0 until the stream says it
    /// is live with nothing of its own to send first (see
    /// [`ClientLink::offer`]).
    direct_until: AtomicU64,
    pub(crate) events_sent: AtomicU64,
    /// Events framed for this client, not yet written.
    pub(crate) queue: EventQueue,
    /// The connection's socket, when served by a server that watches its sockets ([`crate::socket`]): an
    /// end decided here also interrupts a write stuck on a full socket.
    socket: Option<Arc<dyn WatchedSocket>>,
}

/// A claimed chunk holds at most this many events, and stops before
/// passing this many bytes (unless its first event is larger): what does
/// not fit goes out in the stream's own writes.
const CHUNK_FRAMES: usize = 64;
const CHUNK_BYTES: usize = 64 * 1024;

/// What [`ClientLink::offer`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Queued; the stream's task or the turn's holder writes it.
    Queued,
    /// Queued, and the caller holds the stream's write turn.
    Claimed,
}

/// What a stream must do next.
pub(crate) enum Next {
    Write(Bytes),
    End(DisconnectReason),
}

impl ClientLink {
    pub(crate) fn new(queue_len: usize, socket: Option<Arc<dyn WatchedSocket>>) -> Self {
        ClientLink {
            reason: AtomicU8::new(0),
            direct_until: AtomicU64::new(0),
            events_sent: AtomicU64::new(0),
            queue: EventQueue::new(queue_len),
            socket,
        }
    }

    /// Ends the connection with `reason`, unless it already has one; the
    /// stream wakes and ends, and a write waiting for a full socket fails
    /// (what fits is still written: a reading client sees a clean end).
    pub(crate) fn close(&self, reason: DisconnectReason) {
        if self
            .reason
            .compare_exchange(0, reason as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.queue.wake();
            // A drained stream ends gracefully: its last frame (the
            // jittered `retry:`) must reach the browser, not be reset.
            if let Some(socket) = self
                .socket
                .as_ref()
                .filter(|_| reason != DisconnectReason::Drained)
            {
                socket.abort_stalled_writes();
            }
        }
    }

    /// Fails a write stuck on a full socket (and any later one that
    /// cannot proceed at once).
    pub(crate) fn abort_socket(&self) {
        if let Some(socket) = &self.socket {
            socket.abort_stalled_writes();
        }
    }

    /// From now on (until `until`, Unix ms: a stream token's expiry), a
    /// publisher may write the stream's events itself.
    pub(crate) fn allow_direct(&self, until: u64) {
        self.direct_until.store(until, Ordering::Release);
    }

    /// Queues `frame` for the stream. When the stream allows it and its
    /// task has nothing in flight, the caller takes the socket's write
    /// turn (`Claimed`) and must then call [`ClientLink::write_claimed`]
    /// (or [`ClientLink::hand_back`]); else the stream is woken, unless
    /// another publisher holds the turn (it writes what was queued).
    pub(crate) fn offer(&self, frame: Bytes, now_ms: u64) -> Result<Offer, Full> {
        let socket = self
            .socket
            .as_ref()
            .filter(|_| now_ms < self.direct_until.load(Ordering::Acquire))
            .filter(|_| self.reason().is_none());
        self.queue.push_then(frame, || match socket {
            Some(socket) if socket.try_claim() => (Offer::Claimed, false),
            Some(socket) if socket.is_claimed() => (Offer::Queued, false),
            _ => (Offer::Queued, true),
        })
    }

    /// With the turn claimed: writes the queued events (up to a chunk's
    /// worth) and gives the turn back; the number written. What could not
    /// be written is left to the stream's task, which is woken. Checked
    /// again here (`now_ms`), since the claim may be a while old: a stream
    /// whose end was decided or whose token expired meanwhile gets
    /// nothing more from publishers (its task ends it, dropping the queue).
    pub(crate) fn write_claimed(&self, now_ms: u64) -> u64 {
        let Some(socket) = &self.socket else {
            return 0;
        };
        let written = self.queue.write_front(|items| {
            if self.reason().is_some() || now_ms >= self.direct_until.load(Ordering::Acquire) {
                socket.hand_back();
                return 0;
            }
            let mut take = 0;
            let mut bytes = 0;
            for frame in items {
                if take == CHUNK_FRAMES || (take > 0 && bytes + frame.len() > CHUNK_BYTES) {
                    break;
                }
                take += 1;
                bytes += frame.len();
            }
            let more = take < items.len();
            let mut frames = items.iter().take(take).map(|frame| &frame[..]);
            match socket.write_claimed(&mut frames, more) {
                ClaimedWrite::All | ClaimedWrite::Part => take,
                ClaimedWrite::Blocked | ClaimedWrite::Failed => 0,
            }
        });
        if written > 0 {
            self.events_sent
                .fetch_add(written as u64, Ordering::Relaxed);
        }
        written as u64
    }

    /// Gives a claimed turn back unused: the stream's task writes.
    pub(crate) fn hand_back(&self) {
        if let Some(socket) = &self.socket {
            socket.hand_back();
        }
    }

    pub(crate) fn reason(&self) -> Option<DisconnectReason> {
        DisconnectReason::from_u8(self.reason.load(Ordering::Acquire))
    }

    /// The end if one was decided (it wins over queued events), else the
    /// next queued event, else `Pending` with the stream's waker kept.
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Next> {
        if let Some(reason) = self.reason() {
            return Poll::Ready(Next::End(reason));
        }
        match self.queue.poll_pop(cx) {
            Poll::Ready(frame) => Poll::Ready(Next::Write(frame)),
            // A close between the check above and the waker registration
            // in poll_pop woke no one: look again.
            Poll::Pending => match self.reason() {
                Some(reason) => Poll::Ready(Next::End(reason)),
                None => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A socket whose turn is always open and that records what a
    /// claimant wrote (the real one is `lean_serve`'s, tested there and
    /// end to end in the app's suite).
    #[derive(Debug, Default)]
    struct OpenTurn {
        claims: AtomicU64,
        handed_back: AtomicU64,
        written: Mutex<Vec<Vec<u8>>>,
    }

    impl WatchedSocket for OpenTurn {
        fn ended(&self) -> Option<DisconnectReason> {
            None
        }
        fn abort_stalled_writes(&self) {}
        fn try_claim(&self) -> bool {
            self.claims.fetch_add(1, Ordering::Relaxed);
            true
        }
        fn write_claimed(
            &self,
            frames: &mut dyn Iterator<Item = &[u8]>,
            _more: bool,
        ) -> ClaimedWrite {
            let mut written = self.written.lock().unwrap();
            written.extend(frames.map(<[u8]>::to_vec));
            ClaimedWrite::All
        }
        fn hand_back(&self) {
            self.handed_back.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn link() -> (ClientLink, Arc<OpenTurn>) {
        let socket = Arc::new(OpenTurn::default());
        let link = ClientLink::new(256, Some(socket.clone() as Arc<dyn WatchedSocket>));
        (link, socket)
    }

    /// Publishers write a stream's events only once the stream allowed it,
    /// only before its token's expiry, and never once its end is decided:
    /// the rest is queued for the stream, which ends without sending them.
    #[test]
    fn publishers_write_only_while_the_stream_allows_it() {
        let (link, socket) = link();
        let frame = Bytes::from_static(b"data: x\n\n");
        assert_eq!(link.offer(frame.clone(), 10), Ok(Offer::Queued));
        assert_eq!(socket.claims.load(Ordering::Relaxed), 0, "not live yet");
        assert_eq!(link.queue.pop().as_deref(), Some(&frame[..]));

        link.allow_direct(1_000);
        assert_eq!(link.offer(frame.clone(), 999), Ok(Offer::Claimed));
        assert_eq!(link.write_claimed(999), 1);
        assert_eq!(socket.written.lock().unwrap().len(), 1);
        assert_eq!(link.events_sent.load(Ordering::Relaxed), 1);

        assert_eq!(
            link.offer(frame.clone(), 1_000),
            Ok(Offer::Queued),
            "expired"
        );
        assert_eq!(link.queue.pop().as_deref(), Some(&frame[..]));

        // A claim that was taken before the token expired, or before the
        // end was decided, writes nothing when it comes to write.
        assert_eq!(link.offer(frame.clone(), 999), Ok(Offer::Claimed));
        assert_eq!(link.write_claimed(1_000), 0, "expired since the claim");
        assert_eq!(socket.handed_back.load(Ordering::Relaxed), 1);
        assert_eq!(link.queue.pop().as_deref(), Some(&frame[..]));
        link.allow_direct(u64::MAX);
        assert_eq!(link.offer(frame.clone(), 2_000), Ok(Offer::Claimed));
        link.close(DisconnectReason::Kicked);
        assert_eq!(link.write_claimed(2_000), 0, "ended since the claim");
        assert_eq!(socket.handed_back.load(Ordering::Relaxed), 2);
        assert_eq!(link.queue.pop().as_deref(), Some(&frame[..]));

        assert_eq!(link.offer(frame, 3_000), Ok(Offer::Queued), "ending");
        assert_eq!(socket.claims.load(Ordering::Relaxed), 3);
        assert_eq!(socket.written.lock().unwrap().len(), 1);
    }

    /// A claimed write takes what was queued before it, in order, up to a
    /// chunk's worth.
    #[test]
    fn a_claimed_write_takes_the_queue_in_order_up_to_a_chunk() {
        let (link, socket) = link();
        link.allow_direct(u64::MAX);
        let frames: Vec<Bytes> = (0..CHUNK_FRAMES + 3)
            .map(|n| Bytes::from(format!("data: {n}\n\n")))
            .collect();
        for frame in &frames {
            link.queue.push(frame.clone()).expect("room");
        }
        assert_eq!(link.write_claimed(0), CHUNK_FRAMES as u64);
        let written = socket.written.lock().unwrap().clone();
        assert_eq!(
            written,
            frames[..CHUNK_FRAMES]
                .iter()
                .map(|f| f.to_vec())
                .collect::<Vec<_>>()
        );
        assert_eq!(link.queue.pop().as_deref(), Some(&frames[CHUNK_FRAMES][..]));
    }
}
