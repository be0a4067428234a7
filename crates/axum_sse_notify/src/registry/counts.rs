//! Counters that outlive individual connections: the stats' totals and
//! what `/metrics` reads at scrape time. Plain atomics, added to where the
//! registry already does the work, so counting costs no lock.

use std::sync::atomic::{AtomicU64, Ordering};

use super::Registry;
use super::history::ResetReason;
use super::reason::DisconnectReason;
use crate::clock::unix_millis;
use crate::metrics::{Refusal, ReplaySource, SseMetrics};

#[derive(Default)]
pub(super) struct Counters {
    /// Events written to sockets (one per receiver).
    pub(super) events_sent: AtomicU64,
    /// Sends (one per `send` call that reached anyone or not).
    pub(super) events_published: AtomicU64,
    /// Unix milliseconds of the last send; 0 = never.
    pub(super) last_event_at: AtomicU64,
    pub(super) connections_opened: AtomicU64,
    pub(super) connections_closed: AtomicU64,
    /// By [`DisconnectReason`] (its number).
    disconnects: [AtomicU64; DisconnectReason::SLOTS],
    refusals: [AtomicU64; Refusal::ALL.len()],
    replayed: [AtomicU64; ReplaySource::ALL.len()],
    resets: [AtomicU64; ResetReason::ALL.len()],
}

/// A snapshot of the registry's counters, for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub open: usize,
    pub connects: u64,
    /// Indexed by [`DisconnectReason`] as a number.
    pub disconnects: [u64; DisconnectReason::SLOTS],
    pub refusals: [u64; Refusal::ALL.len()],
    pub delivered: u64,
    pub replayed: [u64; ReplaySource::ALL.len()],
    pub resets: [u64; ResetReason::ALL.len()],
}

fn load<const N: usize>(counters: &[AtomicU64; N]) -> [u64; N] {
    std::array::from_fn(|i| counters[i].load(Ordering::Relaxed))
}

impl Registry {
    /// One send published (by a partitioned bus, which delivers a wide
    /// send once per partition and so counts sends, not deliveries).
    pub(crate) fn count_send(&self) {
        self.counters
            .events_published
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn counts(&self) -> Counts {
        let c = &self.counters;
        Counts {
            open: self.len(),
            connects: c.connections_opened.load(Ordering::Relaxed),
            disconnects: load(&c.disconnects),
            refusals: load(&c.refusals),
            delivered: c.events_sent.load(Ordering::Relaxed),
            replayed: load(&c.replayed),
            resets: load(&c.resets),
        }
    }

    /// The figures only metrics need; `None` with metrics turned off.
    pub fn metrics(&self) -> Option<&SseMetrics> {
        self.metrics.as_deref()
    }

    /// Counts a refused request (a stream or a send).
    pub fn count_refusal(&self, refusal: Refusal) {
        self.counters.refusals[refusal.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_replayed(&self, source: ReplaySource, n: u64) {
        if n > 0 {
            self.counters.replayed[source as usize].fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(super) fn count_reset(&self, reason: ResetReason, n: u64) {
        self.counters.resets[reason as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn count_disconnect(&self, reason: DisconnectReason) {
        self.counters.disconnects[reason as usize].fetch_add(1, Ordering::Relaxed);
        self.counters
            .connections_closed
            .fetch_add(1, Ordering::Relaxed);
    }

    /// An event delivered here (`counted`: also one more published).
    pub(super) fn count_published(&self, counted: bool) {
        if counted {
            self.count_send();
        }
        self.counters
            .last_event_at
            .store(unix_millis(std::time::SystemTime::now()), Ordering::Relaxed);
    }
}
