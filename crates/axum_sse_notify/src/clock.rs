//! Wall-clock time in Unix milliseconds: the unit of every timestamp the
//! layer shows (listings, inbox rows, bus lag).

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix milliseconds.
pub fn unix_millis_now() -> u64 {
    unix_millis(SystemTime::now())
}

/// `t` in Unix milliseconds (0 before the epoch).
pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
