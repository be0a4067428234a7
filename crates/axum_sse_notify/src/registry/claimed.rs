//! Writing a send's event to the streams whose write turn it took.
//!
//! A send that took a stream's turn ([`ClientLink::offer`]) writes the
//! event to its socket itself, instead of waking the stream's task to do
//! it: a broadcast then costs one non-blocking write per stream and no
//! task wake-ups, and the first streams have it before the last were even
//! looked up. A few streams are written by the sender at once; many (a
//! broadcast) by a task of their own that lets other work in between, so
//! that `send` returns without waiting for thousands of sockets.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::counts::Counters;
use super::link::ClientLink;
use crate::clock::unix_millis_now;

/// Up to this many claimed streams are written by the sender itself.
const WRITE_IN_PLACE: usize = 32;
/// The writing task gives other tasks their turn after this many streams.
const YIELD_EVERY: usize = 256;

/// The streams one send took the turn of, not yet written. Dropped
/// unwritten (the task cancelled at shutdown), the rest are handed back
/// to their streams' tasks.
pub(super) struct Claimed {
    links: Vec<Arc<ClientLink>>,
    written: usize,
    counters: Arc<Counters>,
}

impl Claimed {
    pub(super) fn new(counters: Arc<Counters>) -> Self {
        Claimed {
            links: Vec::new(),
            written: 0,
            counters,
        }
    }

    pub(super) fn push(&mut self, link: Arc<ClientLink>) {
        self.links.push(link);
    }

    /// Writes each stream's queued events: here when there are few or no
    /// runtime to spawn on, else from a task.
    pub(super) fn write(mut self) {
        if self.links.is_empty() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if self.links.len() > WRITE_IN_PLACE => {
                runtime.spawn(async move {
                    while !self.write_some(YIELD_EVERY) {
                        tokio::task::yield_now().await;
                    }
                });
            }
            _ => {
                self.write_some(usize::MAX);
            }
        }
    }

    /// Writes up to `n` streams; whether all are written.
    fn write_some(&mut self, n: usize) -> bool {
        let end = self.links.len().min(self.written.saturating_add(n));
        let now_ms = unix_millis_now();
        let mut sent = 0;
        while self.written < end {
            // Counted before the write: were it to panic, `Drop` must not
            // hand back a turn this one no longer holds.
            let link = &self.links[self.written];
            self.written += 1;
            sent += link.write_claimed(now_ms);
        }
        self.counters.events_sent.fetch_add(sent, Ordering::Relaxed);
        self.written == self.links.len()
    }
}

impl Drop for Claimed {
    fn drop(&mut self) {
        for link in &self.links[self.written..] {
            link.hand_back();
        }
    }
}
