//! One client's bounded queue of framed events.
//!
//! A tokio `mpsc` channel would do, but it allocates about 1.6 KB per
//! client up front (cache-padded channel state and a first block of 32
//! slots) for what is, most of the time, an empty queue. This one is a
//! `VecDeque` that allocates on the first event, gives memory back once
//! drained after a burst, and has exactly one sender (the registry) and one
//! receiver (the stream).

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::task::AtomicWaker;

/// Slots kept after draining; more are given back.
const KEEP_CAPACITY: usize = 8;

pub(crate) struct EventQueue {
    items: Mutex<VecDeque<Bytes>>,
    capacity: usize,
    /// The stream waiting for the next event.
    waker: AtomicWaker,
}

/// The queue held `capacity` events already.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Full;

impl EventQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        EventQueue {
            items: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            waker: AtomicWaker::new(),
        }
    }

    /// Queues `frame` unless the queue is full; never waits.
    pub(crate) fn push(&self, frame: Bytes) -> Result<(), Full> {
        {
            let mut items = self.lock();
            if items.len() >= self.capacity {
                return Err(Full);
            }
            items.push_back(frame);
        }
        self.waker.wake();
        Ok(())
    }

    /// Queues `frame` unless the queue is full; `then`, run with the
    /// queue still locked, says what to return and whether to wake the
    /// stream (a publisher that took the stream's write turn writes the
    /// queue itself, and one holding it will: no wake).
    pub(crate) fn push_then<T>(
        &self,
        frame: Bytes,
        then: impl FnOnce() -> (T, bool),
    ) -> Result<T, Full> {
        let (out, wake) = {
            let mut items = self.lock();
            if items.len() >= self.capacity {
                return Err(Full);
            }
            items.push_back(frame);
            then()
        };
        if wake {
            self.waker.wake();
        }
        Ok(out)
    }

    /// Runs `write` on the queued events with the queue locked (pushes
    /// wait); it returns how many of the first ones it wrote, which are
    /// removed.
    pub(crate) fn write_front(&self, write: impl FnOnce(&VecDeque<Bytes>) -> usize) -> usize {
        let mut items = self.lock();
        let written = write(&items).min(items.len());
        items.drain(..written);
        Self::give_back(&mut items);
        written
    }

    /// The next event, if one is queued.
    pub(crate) fn pop(&self) -> Option<Bytes> {
        let mut items = self.lock();
        let next = items.pop_front();
        Self::give_back(&mut items);
        next
    }

    fn give_back(items: &mut VecDeque<Bytes>) {
        if items.is_empty() && items.capacity() > KEEP_CAPACITY {
            items.shrink_to(KEEP_CAPACITY);
        }
    }

    /// The next event, or `Pending` with `cx`'s waker registered. Only one
    /// task may wait at a time (the client's stream).
    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Bytes> {
        if let Some(frame) = self.pop() {
            return Poll::Ready(frame);
        }
        self.waker.register(cx.waker());
        // An event pushed between the pop and the register woke no one.
        match self.pop() {
            Some(frame) => Poll::Ready(frame),
            None => Poll::Pending,
        }
    }

    /// Wakes the waiting stream (to notice something other than an event).
    pub(crate) fn wake(&self) {
        self.waker.wake();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Bytes>> {
        // Pushing and popping cannot panic half-way: a poisoned queue is
        // still consistent.
        self.items.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::sync::Arc;
    use std::time::Duration;

    impl EventQueue {
        async fn next(&self) -> Bytes {
            poll_fn(|cx| self.poll_pop(cx)).await
        }
    }

    #[test]
    fn bounded_and_in_order() {
        let queue = EventQueue::new(2);
        assert_eq!(queue.push(Bytes::from_static(b"a")), Ok(()));
        assert_eq!(queue.push(Bytes::from_static(b"b")), Ok(()));
        assert_eq!(queue.push(Bytes::from_static(b"c")), Err(Full));
        assert_eq!(queue.pop().as_deref(), Some(&b"a"[..]));
        assert_eq!(queue.pop().as_deref(), Some(&b"b"[..]));
        assert_eq!(queue.pop(), None);
    }

    #[test]
    fn memory_is_given_back_after_a_burst() {
        let queue = EventQueue::new(1000);
        for _ in 0..500 {
            queue.push(Bytes::from_static(b"x")).unwrap();
        }
        while queue.pop().is_some() {}
        assert!(queue.lock().capacity() <= KEEP_CAPACITY);
        // An idle queue holds no allocation at all.
        assert_eq!(EventQueue::new(1000).lock().capacity(), 0);
    }

    #[tokio::test]
    async fn a_waiting_stream_wakes_on_push() {
        let queue = Arc::new(EventQueue::new(4));
        let waiting = tokio::spawn({
            let queue = queue.clone();
            async move { queue.next().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        queue.push(Bytes::from_static(b"hello")).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(2), waiting)
            .await
            .expect("woken")
            .expect("task");
        assert_eq!(&got[..], b"hello");
    }

    #[tokio::test]
    async fn no_event_is_lost_between_threads() {
        let queue = Arc::new(EventQueue::new(100_000));
        let pusher = std::thread::spawn({
            let queue = queue.clone();
            move || {
                for n in 0..20_000u32 {
                    queue.push(Bytes::from(n.to_be_bytes().to_vec())).unwrap();
                }
            }
        });
        for n in 0..20_000u32 {
            let frame = tokio::time::timeout(Duration::from_secs(5), queue.next())
                .await
                .expect("next event");
            assert_eq!(&frame[..], n.to_be_bytes());
        }
        pusher.join().unwrap();
    }
}
