//! Partitions: which of the bus's streams an event lives in.
//!
//! With `bus.partitions` above one, the Redis bus keeps one stream per
//! partition (each on one shard), and every user belongs to exactly one
//! partition, chosen by a hash of the user id that every process computes
//! alike (FNV-1a, never a per-process random hash). A stream of a user
//! stands in that partition only, so its `id:` line stays one position in
//! one stream. Events addressed to one user go to the user's partition;
//! anything wider (everyone, tags, sessions, client ids) is appended to
//! every partition, each copy delivered only to that partition's streams:
//! a wide event costs one append per partition, and in return a stream's
//! events keep one order and one id form.

use crate::target::{Scope, Target, UserId};

/// How many partitions there are (at least one). The same on every process
/// of a cluster: a user's partition must not depend on who computes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partitions(u16);

/// The most partitions a bus may have: each is a stream and two
/// connections per process.
pub const MAX_PARTITIONS: u16 = 256;

/// Which partitions an event goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The user's partition only.
    One(usize),
    /// Every partition (each copy delivered to its own streams).
    Every,
}

impl Partitions {
    /// One partition: everything in one stream.
    pub const ONE: Partitions = Partitions(1);

    /// `None` for zero or more than [`MAX_PARTITIONS`].
    pub fn new(count: u16) -> Option<Self> {
        (1..=MAX_PARTITIONS)
            .contains(&count)
            .then_some(Partitions(count))
    }

    pub fn count(self) -> usize {
        usize::from(self.0)
    }

    /// The partition a user's streams stand in.
    pub fn of(self, user: &UserId) -> usize {
        if self.0 == 1 {
            return 0;
        }
        (stable_hash(user.as_str().as_bytes()) % u64::from(self.0)) as usize
    }

    /// Where an event for `target` goes.
    pub fn route(self, target: &Target) -> Route {
        match target.scope() {
            Scope::User(user) => Route::One(self.of(user)),
            _ if self.0 == 1 => Route::One(0),
            _ => Route::Every,
        }
    }
}

impl Default for Partitions {
    fn default() -> Self {
        Partitions::ONE
    }
}

/// The shard a partition lives on: the URL with the highest hash of
/// (URL's address, partition), so that adding or removing a shard moves
/// only the partitions it takes or held (rendezvous hashing). The address
/// is the server's (see [`shard_address`]): a new password, or another way
/// of writing the same server, moves nothing.
pub fn shard_of<'a>(urls: &[&'a str], partition: usize) -> &'a str {
    let weight = |url: &str| {
        let mut key = shard_address(url).into_bytes();
        key.extend_from_slice(&(partition as u64).to_le_bytes());
        stable_hash(&key)
    };
    urls.iter()
        .copied()
        .max_by_key(|url| weight(url))
        .unwrap_or("")
}

/// A Redis URL's server and database, `host:port/db`, whatever else it
/// says: no scheme, no credentials, no options; the default port and
/// database written out (`redis://:pw@a/` and `redis://a:6379/0` are one).
/// A URL of another shape (a Unix socket) is kept without its options.
pub fn shard_address(url: &str) -> String {
    let Some(rest) = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"))
    else {
        // A socket's path, without options (they may hold a password).
        return url.split(['?', '#']).next().unwrap_or(url).to_string();
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let has_port = host
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
        && !host.ends_with(']');
    let db = path.trim_matches('/');
    format!(
        "{host}{}/{}",
        if has_port { "" } else { ":6379" },
        if db.is_empty() { "0" } else { db }
    )
}

/// 64-bit FNV-1a: stable across processes, versions and platforms.
pub(crate) fn stable_hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_s_partition_is_fixed_and_users_spread() {
        let four = Partitions::new(4).expect("4 is allowed");
        let ann = UserId::new("ann");
        assert_eq!(four.of(&ann), four.of(&UserId::new("ann")));
        // The published FNV-1a test vector: the hash does not depend on
        // this process.
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        let mut seen = [0usize; 4];
        for n in 0..4000 {
            seen[four.of(&UserId::new(format!("user-{n}")))] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
        assert_eq!(Partitions::ONE.of(&ann), 0);
    }

    #[test]
    fn only_one_user_s_events_stay_in_one_partition() {
        let four = Partitions::new(4).expect("4 is allowed");
        let ann = UserId::new("ann");
        assert_eq!(
            four.route(&Target::user(ann.clone())),
            Route::One(four.of(&ann))
        );
        assert_eq!(four.route(&Target::all()), Route::Every);
        assert_eq!(Partitions::ONE.route(&Target::all()), Route::One(0));
        assert!(Partitions::new(0).is_none());
        assert!(Partitions::new(MAX_PARTITIONS + 1).is_none());
    }

    #[test]
    fn a_new_shard_takes_partitions_from_the_others_and_moves_nothing_else() {
        let two = ["redis://a:6379", "redis://b:6379"];
        let three = ["redis://a:6379", "redis://b:6379", "redis://c:6379"];
        let mut moved = 0;
        let mut on = [0usize; 3];
        for partition in 0..64 {
            let before = shard_of(&two, partition);
            let after = shard_of(&three, partition);
            if before != after {
                assert_eq!(
                    after, "redis://c:6379",
                    "a partition moved between old shards"
                );
                moved += 1;
            }
            on[three.iter().position(|u| *u == after).expect("listed")] += 1;
        }
        assert!((10..35).contains(&moved), "moved {moved} of 64");
        assert!(on.iter().all(|&n| n >= 10), "{on:?}");
        assert_eq!(shard_address("redis://:pw@b/"), "b:6379/0");
        assert_eq!(shard_address("redis://b:6379/0?protocol=resp3"), "b:6379/0");
        assert_eq!(shard_address("rediss://u:p@b:7000/2"), "b:7000/2");
        assert_eq!(shard_address("redis://[::1]"), "[::1]:6379/0");
        assert_eq!(
            shard_address("redis+unix:///tmp/r.sock?pass=x"),
            "redis+unix:///tmp/r.sock"
        );
        // Credentials and order do not move anything.
        let secret = ["redis://:pw@b:6379", "redis://a:6379"];
        for partition in 0..64 {
            let plain = shard_of(&two, partition).trim_start_matches("redis://");
            let with = shard_of(&secret, partition);
            assert!(with.ends_with(plain), "{with} vs {plain}");
        }
    }
}
