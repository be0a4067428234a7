//! Entries appended twice (a publisher retrying on a new connection what
//! it could not confirm on the old one) are read once.

use std::collections::HashMap;

use crate::sse::bus::wire::Origin;

/// Publishers remembered, at most; beyond it the half not heard from the
/// longest is forgotten (a publisher is one process run: they come and go
/// with deploys).
const MAX_PUBLISHERS: usize = 4096;

/// Each publisher's highest count read so far.
#[derive(Default)]
pub struct Seen {
    last: HashMap<u64, (u64, u64)>,
    /// Counts calls, to order publishers by when they were last heard.
    clock: u64,
}

impl Seen {
    /// Whether the entry is new (and remembers it); false for a copy.
    pub fn first_time(&mut self, origin: Origin) -> bool {
        self.clock += 1;
        if let Some((seq, heard)) = self.last.get_mut(&origin.publisher) {
            if origin.seq <= *seq {
                return false;
            }
            *seq = origin.seq;
            *heard = self.clock;
            return true;
        }
        if self.last.len() >= MAX_PUBLISHERS {
            let mut heard: Vec<u64> = self.last.values().map(|(_, h)| *h).collect();
            heard.sort_unstable();
            let cut = heard[heard.len() / 2];
            self.last.retain(|_, (_, h)| *h > cut);
        }
        self.last.insert(origin.publisher, (origin.seq, self.clock));
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
    fn the_memory_is_bounded() {
        let mut seen = Seen::default();
        for publisher in 0..(MAX_PUBLISHERS as u64 * 3) {
            assert!(seen.first_time(at(publisher, 1)));
        }
        assert!(seen.last.len() <= MAX_PUBLISHERS);
        assert!(!seen.first_time(at(MAX_PUBLISHERS as u64 * 3 - 1, 1)));
    }
}
