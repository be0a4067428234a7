//! Entries appended twice (a publisher retrying on a new connection what
//! it could not confirm on the old one) are read once.

use std::collections::HashMap;

use crate::bus::wire::Origin;

/// Publishers remembered, at most; beyond it the half not heard from the
/// longest is forgotten (a publisher is one process run: they come and go
/// with deploys).
const MAX_PUBLISHERS: usize = 4096;

/// Counts remembered below a publisher's highest, one bit each: a retry
/// re-appends at most one pipeline (256 sends), so a copy is always
/// within this window; a count below it is taken for a copy.
const WINDOW: u64 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;

/// One publisher's counts seen: the highest, and which of the `WINDOW`
/// below it (bit `i` is `max - i`).
struct Window {
    max: u64,
    bits: [u64; WORDS],
    heard: u64,
}

impl Window {
    fn new(seq: u64, heard: u64) -> Self {
        let mut bits = [0; WORDS];
        bits[0] = 1;
        Window {
            max: seq,
            bits,
            heard,
        }
    }

    /// Marks `seq` seen; false if it already was (or is too old to tell).
    fn first_time(&mut self, seq: u64) -> bool {
        if seq > self.max {
            self.shift(seq - self.max);
            self.max = seq;
            self.bits[0] |= 1;
            return true;
        }
        let i = self.max - seq;
        if i >= WINDOW {
            return false;
        }
        let (word, bit) = ((i / 64) as usize, i % 64);
        let seen = self.bits[word] & (1 << bit) != 0;
        self.bits[word] |= 1 << bit;
        !seen
    }

    /// Whether `seq` was seen (without marking it); a count below the
    /// window is not known, so not claimed.
    fn has(&self, seq: u64) -> bool {
        if seq > self.max {
            return false;
        }
        let i = self.max - seq;
        i < WINDOW && self.bits[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    /// Moves every bit `by` places up (older), dropping what falls out.
    fn shift(&mut self, by: u64) {
        if by >= WINDOW {
            self.bits = [0; WORDS];
            return;
        }
        let (words, bits) = ((by / 64) as usize, by % 64);
        for i in (0..WORDS).rev() {
            let from = i.checked_sub(words);
            let high = from.map_or(0, |f| self.bits[f] << bits);
            let low = match from.and_then(|f| f.checked_sub(1)) {
                Some(f) if bits > 0 => self.bits[f] >> (64 - bits),
                _ => 0,
            };
            self.bits[i] = high | low;
        }
    }
}

/// Each publisher's counts seen so far.
#[derive(Default)]
pub struct Seen {
    publishers: HashMap<u64, Window>,
    /// Counts calls, to order publishers by when they were last heard.
    clock: u64,
}

impl Seen {
    /// Whether an entry from `origin` was read before (entries that do
    /// not say who appended them never are).
    pub fn is_copy(&mut self, origin: Option<Origin>) -> bool {
        origin.is_some_and(|origin| !self.first_time(origin))
    }

    /// Whether an entry from `origin` has been read, without marking it.
    pub fn has_read(&self, origin: Origin) -> bool {
        self.publishers
            .get(&origin.publisher)
            .is_some_and(|w| w.has(origin.seq))
    }

    /// Whether the entry is new (and remembers it); false for a copy.
    pub fn first_time(&mut self, origin: Origin) -> bool {
        self.clock += 1;
        if let Some(window) = self.publishers.get_mut(&origin.publisher) {
            window.heard = self.clock;
            return window.first_time(origin.seq);
        }
        if self.publishers.len() >= MAX_PUBLISHERS {
            let mut heard: Vec<u64> = self.publishers.values().map(|w| w.heard).collect();
            heard.sort_unstable();
            let cut = heard[heard.len() / 2];
            self.publishers.retain(|_, w| w.heard > cut);
        }
        self.publishers
            .insert(origin.publisher, Window::new(origin.seq, self.clock));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(publisher: u64, seq: u64) -> Origin {
        Origin { publisher, seq }
    }

    #[test]
    fn copies_are_dropped_per_publisher() {
        let mut seen = Seen::default();
        assert!(seen.first_time(at(1, 1)));
        assert!(seen.first_time(at(1, 2)));
        assert!(seen.first_time(at(2, 1)));
        assert!(!seen.first_time(at(1, 2)), "appended again after a retry");
        assert!(!seen.first_time(at(1, 1)));
        assert!(seen.first_time(at(1, 3)));
    }

    #[test]
    fn an_append_that_arrives_after_later_ones_is_not_a_copy() {
        // 3 was refused while 4 and 5 went through; its retry comes last.
        let mut seen = Seen::default();
        for seq in [1, 2, 4, 5] {
            assert!(seen.first_time(at(7, seq)));
        }
        assert!(seen.first_time(at(7, 3)), "late, but new");
        assert!(!seen.first_time(at(7, 3)));
        assert!(!seen.first_time(at(7, 4)));
        // Far ahead: the window moves, across word boundaries too.
        assert!(seen.first_time(at(7, 70)));
        assert!(!seen.first_time(at(7, 5)));
        assert!(seen.first_time(at(7, 6)));
        assert!(seen.first_time(at(7, 69)));
        assert!(!seen.first_time(at(7, 70)));
        assert!(seen.first_time(at(7, 70 + WINDOW + 5)));
        assert!(!seen.first_time(at(7, 69)), "below the window: a copy");
    }

    #[test]
    fn what_was_read_can_be_asked_without_marking_it() {
        let mut seen = Seen::default();
        for seq in [1, 2, 4] {
            seen.first_time(at(9, seq));
        }
        assert!(seen.has_read(at(9, 2)));
        assert!(!seen.has_read(at(9, 3)));
        assert!(!seen.has_read(at(9, 5)));
        assert!(!seen.has_read(at(8, 1)));
        assert!(seen.first_time(at(9, 3)), "asking did not mark it");
        seen.first_time(at(9, 4 + WINDOW + 1));
        assert!(!seen.has_read(at(9, 2)), "below the window: not claimed");
    }

    #[test]
    fn the_memory_is_bounded() {
        let mut seen = Seen::default();
        for publisher in 0..(MAX_PUBLISHERS as u64 * 3) {
            assert!(seen.first_time(at(publisher, 1)));
        }
        assert!(seen.publishers.len() <= MAX_PUBLISHERS);
        assert!(!seen.first_time(at(MAX_PUBLISHERS as u64 * 3 - 1, 1)));
    }
}
