//! Whose turn it is to write an event stream's socket.
//!
//! Why: a broadcast to 10 000 streams would otherwise queue the frame
//! 10 000 times and wake 10 000 tasks, each scheduled only to poll its
//! body and write; servers that write from the publishing loop itself
//! deliver the first copy sooner and spend less per copy. So a stream's
//! task that has written everything it had leaves its turn **open**; a
//! publisher may **claim** it, write one chunk without waiting, and give
//! the turn back: open again if all of it went out, else to the task,
//! which writes what is left (kept here) before anything else and waits
//! for the socket as usual. While a publisher holds the turn, the task
//! waits for it; order is kept because only the turn's holder writes.

use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, PoisonError, Weak};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::task::AtomicWaker;
use tokio::net::TcpStream;

use crate::direct::chunk_pieces;

/// The connection's task writes (always, outside an event stream).
const TASK: u8 = 0;
/// The task has nothing in flight: a publisher may claim the turn.
const OPEN: u8 = 1;
/// A publisher is writing.
const CLAIMED: u8 = 2;
/// The stream ended: nobody else writes any more.
const CLOSED: u8 = 3;
const HOLDER: u8 = 3;
/// (with `CLAIMED`) the task waits for the turn.
const WAITING: u8 = 4;
/// (with `TASK`) a publisher's chunk did not fit: its rest comes first.
const LEFTOVER: u8 = 8;

/// How a claimed write went. After `All` the turn is open again; after
/// anything else it is the task's, and the task has been woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// The whole chunk was written.
    All,
    /// Part of it: the task writes the rest first. The frames count as
    /// written.
    Part,
    /// Nothing (the socket is full): the frames are still the caller's.
    Blocked,
    /// The socket failed or is gone: the task will find out and end.
    Failed,
}

#[derive(Debug)]
pub(crate) struct WriteTurn {
    state: AtomicU8,
    /// Boxed: every stream's state carries the slot, few ever fill it.
    leftover: Mutex<Option<Box<Bytes>>>,
    /// The socket (none when the connection's IO is not a
    /// [`crate::SharedTcp`]: the turn then never opens).
    stream: Weak<TcpStream>,
}

impl Default for WriteTurn {
    fn default() -> Self {
        WriteTurn::new(Weak::new())
    }
}

impl WriteTurn {
    pub(crate) fn new(stream: Weak<TcpStream>) -> Self {
        WriteTurn {
            state: AtomicU8::new(TASK),
            leftover: Mutex::new(None),
            stream,
        }
    }

    /// The task takes the turn before it looks for anything to write:
    /// `Ready` with what a publisher left unwritten, if anything, or
    /// `Pending` (woken through `waker`) while a publisher writes.
    pub(crate) fn poll_take(
        &self,
        waker: &AtomicWaker,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Bytes>> {
        loop {
            let state = self.state.load(Ordering::Acquire);
            match state & HOLDER {
                OPEN => {
                    if self
                        .state
                        .compare_exchange(state, TASK, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        return Poll::Ready(None);
                    }
                }
                CLAIMED => {
                    waker.register(cx.waker());
                    if state & WAITING != 0
                        || self
                            .state
                            .compare_exchange(
                                state,
                                state | WAITING,
                                Ordering::AcqRel,
                                Ordering::Acquire,
                            )
                            .is_ok()
                    {
                        return Poll::Pending;
                    }
                }
                TASK if state & LEFTOVER != 0 => {
                    self.state.store(TASK, Ordering::Release);
                    return Poll::Ready(self.lock_leftover().take().map(|rest| *rest));
                }
                _ => return Poll::Ready(None),
            }
        }
    }

    /// The task, holding the turn, has nothing more to write: publishers
    /// may write until it takes the turn back. `waker` is registered so
    /// that a publisher handing the turn back wakes the task.
    pub(crate) fn open(&self, waker: &AtomicWaker, cx: &mut Context<'_>) {
        if self.stream.strong_count() == 0 {
            return;
        }
        waker.register(cx.waker());
        let _ = self
            .state
            .compare_exchange(TASK, OPEN, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The stream ended: no publisher writes any more.
    pub(crate) fn close(&self) {
        self.state.store(CLOSED, Ordering::Release);
    }

    pub(crate) fn try_claim(&self) -> bool {
        self.state
            .compare_exchange(OPEN, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub(crate) fn is_claimed(&self) -> bool {
        self.state.load(Ordering::Acquire) & HOLDER == CLAIMED
    }

    /// With the turn claimed: writes `frames` as one chunk, as far as the
    /// socket takes it at once, and gives the turn back (see
    /// [`Claimed`]); `more`: the caller has more frames, so the turn goes
    /// to the task even if this chunk went out whole.
    pub(crate) fn write_claimed<'a>(
        &self,
        frames: impl Iterator<Item = &'a [u8]>,
        more: bool,
        waker: &AtomicWaker,
    ) -> Claimed {
        let outcome = match self.stream.upgrade() {
            Some(stream) => self.write_chunk(&stream, frames),
            None => Claimed::Failed,
        };
        let next = match outcome {
            Claimed::All if !more => OPEN,
            Claimed::Part => TASK | LEFTOVER,
            _ => TASK,
        };
        self.release(next, waker);
        outcome
    }

    /// Gives a claimed turn to the task without writing.
    pub(crate) fn hand_back(&self, waker: &AtomicWaker) {
        self.release(TASK, waker);
    }

    fn release(&self, next: u8, waker: &AtomicWaker) {
        let released = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
                (state & HOLDER == CLAIMED).then_some(next)
            });
        if let Ok(before) = released
            && (before & WAITING != 0 || next != OPEN)
        {
            waker.wake();
        }
    }

    fn write_chunk<'a>(
        &self,
        stream: &TcpStream,
        frames: impl Iterator<Item = &'a [u8]>,
    ) -> Claimed {
        // Most claimed chunks hold one frame: a few slots on the stack.
        let (mut line, mut inline, mut spill) = ([0u8; 20], [IoSlice::new(&[]); 6], Vec::new());
        let Some(mut pieces) = chunk_pieces(&mut line, frames, &mut inline, &mut spill) else {
            return Claimed::All;
        };
        let total: usize = pieces.iter().map(|piece| piece.len()).sum();
        let mut written = 0;
        while written < total {
            match stream.try_write_vectored(pieces) {
                Ok(n) if n > 0 => {
                    written += n;
                    IoSlice::advance_slices(&mut pieces, n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // Failed before any byte: the frames are still the
                // caller's. After some: the rest is the task's (its own
                // write then fails too), never the frames anew, which
                // would break the chunk already begun.
                _ if written == 0 => return Claimed::Failed,
                _ => break,
            }
        }
        if written == total {
            return Claimed::All;
        }
        if written == 0 {
            return Claimed::Blocked;
        }
        let mut rest = BytesMut::with_capacity(total - written);
        for piece in pieces.iter() {
            rest.extend_from_slice(piece);
        }
        *self.lock_leftover() = Some(Box::new(rest.freeze()));
        Claimed::Part
    }

    fn lock_leftover(&self) -> std::sync::MutexGuard<'_, Option<Box<Bytes>>> {
        self.leftover.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::body::Body;
    use bytes::Bytes;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;

    use super::Claimed;
    use crate::direct::stream;
    use crate::{SocketState, WatchedIo};

    /// An event stream served over a real socket: the body's frames come
    /// from the returned sender; the peer end of the socket and the
    /// socket's state are returned with it.
    async fn served() -> (mpsc::UnboundedSender<Bytes>, TcpStream, Arc<SocketState>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let mut io = WatchedIo::shared(accepted, Duration::from_secs(30));
        let state = io.state().clone();
        let (frames, mut next) = mpsc::unbounded_channel::<Bytes>();
        let body = Body::from_stream(futures::stream::poll_fn(move |cx| {
            next.poll_recv(cx)
                .map(|frame| frame.map(Ok::<_, std::io::Error>))
        }));
        let socket = state.clone();
        tokio::spawn(async move {
            let _ = stream(&mut io, &socket, b"HEAD\r\n\r\n".to_vec(), body).await;
        });
        (frames, peer, state)
    }

    /// Reads exactly `expected.len()` bytes and compares.
    async fn expect(peer: &mut TcpStream, expected: &[u8]) {
        let mut got = vec![0u8; expected.len()];
        tokio::time::timeout(Duration::from_secs(10), peer.read_exact(&mut got))
            .await
            .expect("bytes in time")
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected)
        );
    }

    /// [`served`], past its head and a first frame.
    async fn opened() -> (mpsc::UnboundedSender<Bytes>, TcpStream, Arc<SocketState>) {
        let (frames, mut peer, state) = served().await;
        frames.send(Bytes::from_static(b"x")).unwrap();
        expect(&mut peer, b"HEAD\r\n\r\n1\r\nx\r\n").await;
        (frames, peer, state)
    }

    /// The body ends: the stream's last chunk follows.
    async fn end(frames: mpsc::UnboundedSender<Bytes>, peer: &mut TcpStream) {
        drop(frames);
        expect(peer, b"0\r\n\r\n").await;
    }

    async fn claim(state: &SocketState) {
        for _ in 0..400 {
            if state.try_claim() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the turn never opened");
    }

    /// A publisher's chunk goes out between the task's own, in the order
    /// each was handed over; while the publisher holds the turn, the task
    /// writes nothing, even with a frame ready.
    #[tokio::test]
    async fn the_turn_keeps_publisher_and_task_in_order() {
        let (frames, mut peer, state) = served().await;
        frames.send(Bytes::from_static(b"one")).unwrap();
        expect(&mut peer, b"HEAD\r\n\r\n3\r\none\r\n").await;

        claim(&state).await;
        assert!(state.is_claimed());
        assert!(!state.try_claim(), "one holder at a time");
        frames.send(Bytes::from_static(b"two")).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut early = [0u8; 1];
        let nothing = tokio::time::timeout(Duration::from_millis(100), peer.read(&mut early)).await;
        assert!(nothing.is_err(), "the task wrote while the turn was held");

        let chunk = [&b"three"[..], &b"!"[..]];
        assert_eq!(state.write_claimed(chunk.into_iter(), false), Claimed::All);
        expect(&mut peer, b"6\r\nthree!\r\n3\r\ntwo\r\n").await;

        // The task took the turn back for its frame and opened it again.
        claim(&state).await;
        assert_eq!(
            state.write_claimed([&b"four"[..]].into_iter(), false),
            Claimed::All
        );
        expect(&mut peer, b"4\r\nfour\r\n").await;
        end(frames, &mut peer).await;
    }

    /// A chunk larger than the socket takes at once: the rest is written
    /// by the task before anything else, each byte once; meanwhile the
    /// turn is the task's.
    #[tokio::test]
    async fn what_does_not_fit_is_written_by_the_task_first() {
        let (frames, mut peer, state) = opened().await;
        claim(&state).await;
        let big: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(
            state.write_claimed([&big[..]].into_iter(), false),
            Claimed::Part,
            "8 MiB cannot fit a socket that nobody reads"
        );
        assert!(!state.try_claim(), "the rest is the task's to write");
        frames.send(Bytes::from_static(b"after")).unwrap();

        let mut expected = format!("{:x}\r\n", big.len()).into_bytes();
        expected.extend_from_slice(&big);
        expected.extend_from_slice(b"\r\n5\r\nafter\r\n");
        expect(&mut peer, &expected).await;
        claim(&state).await;
        state.hand_back();
        end(frames, &mut peer).await;
    }

    /// Once the stream ended, the turn is never given out again.
    #[tokio::test]
    async fn an_ended_stream_gives_no_turn() {
        let (frames, mut peer, state) = opened().await;
        end(frames, &mut peer).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!state.try_claim());
    }
}
