//! Keeps open streams in step with `sse_notify admin grant|revoke`.
//!
//! A stream's `role:` tag is fixed when it opens, and the admin command
//! is another process. So the command records each change in
//! `role_changes` (see [`Db::set_role`]), and every server process polls
//! that table and ends the streams of a changed user that still carry the
//! old role's tag. The browser reconnects by itself and resumes from its
//! `Last-Event-ID` with the new tag (replay filters by the tags of the
//! resumed stream, so a revoked admin gets no admin event it missed).
//! Polling the shared database reaches every process, with or without the
//! bus.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::auth::stream_sessions::StreamSessions;
use crate::sse::{DisconnectReason, Registry, Target, UserId};
use crate::store::Db;
use crate::store::roles::RoleChange;
use crate::store::users::Role;

/// How often each process looks for new changes: a grant or revoke
/// reaches open streams within this (plus one query).
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// After a change, the user's streams are checked again on every poll
/// for this long: a stream request that read the old role just before
/// the change may register after the change was first applied (admission
/// can wait on the bus for a few `bus.timeout`s). Only streams with the
/// wrong tag are ended, so checking again is harmless.
pub const RECHECK_FOR: Duration = Duration::from_secs(30);

/// Recorded changes older than this are deleted (every process has long
/// applied them).
pub const KEEP_CHANGES: Duration = Duration::from_secs(3600);

/// How often old changes are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(300);

/// Changes read per poll, at most.
const BATCH: i64 = 500;

/// A missing id below the newest one seen (on Postgres, a change
/// committed after a later one, or rolled back) is looked for this long.
const GAP_WAIT: Duration = Duration::from_secs(10);

/// Missing ids remembered at most (a sequence can jump after a crash).
const MAX_GAPS: usize = 1000;

/// Reads where to start (the newest change now), then starts the watcher;
/// abort the handle to stop it. Await it before serving streams, so that
/// no change made after a stream's identity was read is taken as older.
pub async fn start(
    db: Db,
    registry: Arc<Registry>,
    sessions: Arc<StreamSessions>,
) -> JoinHandle<()> {
    let mut watcher = Watcher::new(db, registry, sessions).await;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            watcher.poll(Instant::now()).await;
        }
    })
}

struct Watcher {
    db: Db,
    registry: Arc<Registry>,
    /// What stream connects remember of a changed user's sessions is
    /// forgotten before its streams end, so reconnects read the new role.
    sessions: Arc<StreamSessions>,
    cursor: Cursor,
    /// Users changed within [`RECHECK_FOR`]: their role now and when it
    /// was read.
    recent: HashMap<String, (Role, Instant)>,
    next_prune: Instant,
    /// Whether the last poll failed (logged once per outage).
    failing: bool,
}

impl Watcher {
    async fn new(db: Db, registry: Arc<Registry>, sessions: Arc<StreamSessions>) -> Self {
        // Changes from before this process started concern no stream of
        // it; if the newest id cannot be read, starting from 0 only
        // re-applies old changes, which ends nothing that is right.
        let last = db.last_role_change().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "roles: cannot read the newest change; reading all kept");
            0
        });
        Watcher {
            db,
            registry,
            sessions,
            cursor: Cursor::new(last),
            recent: HashMap::new(),
            next_prune: Instant::now() + PRUNE_EVERY,
            failing: false,
        }
    }

    async fn poll(&mut self, now: Instant) {
        match self.db.role_changes_after(self.cursor.floor(), BATCH).await {
            Ok(changes) => {
                if self.failing {
                    tracing::info!("roles: reading role changes again");
                    self.failing = false;
                }
                let mut users: Vec<String> = self
                    .cursor
                    .take(&changes, now)
                    .into_iter()
                    .map(|c| c.user_id)
                    .collect();
                users.sort();
                users.dedup();
                for user in users {
                    self.changed(user, now).await;
                }
            }
            Err(e) => {
                if !self.failing {
                    tracing::warn!(error = %e, "roles: cannot read role changes; retrying");
                    self.failing = true;
                }
            }
        }
        self.cursor.expire(now);
        self.recent
            .retain(|_, (_, at)| now.duration_since(*at) < RECHECK_FOR);
        for (user, (role, _)) in &self.recent {
            end_stale(&self.registry, user, *role);
        }
        if now >= self.next_prune {
            self.next_prune = now + PRUNE_EVERY;
            let before = crate::store::now_secs() - KEEP_CHANGES.as_secs() as i64;
            if let Err(e) = self.db.prune_role_changes(before).await {
                tracing::warn!(error = %e, "roles: cannot delete old role changes");
            }
        }
    }

    /// Applies one user's change: reads the role now held (the table
    /// says only that it changed; several changes collapse into the
    /// last) and ends the streams tagged otherwise.
    async fn changed(&mut self, user: String, now: Instant) {
        self.sessions.forget_user(&user);
        match self.db.role_of(&user).await {
            Ok(Some(role)) => {
                let ended = end_stale(&self.registry, &user, role);
                tracing::info!(user = %user, role = role.as_str(), ended,
                    "roles: role changed; streams with the old role ended");
                self.recent.insert(user, (role, now));
            }
            // The account is gone, or its role unknown: end all of its
            // streams once (a reconnect reads the role afresh).
            Ok(None) => {
                self.end_all(&user);
                self.recent.remove(&user);
            }
            Err(e) => {
                tracing::warn!(error = %e, user = %user,
                    "roles: cannot read a changed role; ending the user's streams");
                self.end_all(&user);
                self.recent.remove(&user);
            }
        }
    }

    fn end_all(&self, user: &str) {
        self.registry.disconnect_matching(
            &Target::user(UserId::new(user)),
            DisconnectReason::RolesChanged,
        );
    }
}

/// Ends `user`'s streams tagged with a role other than `role`; returns
/// how many were open here.
fn end_stale(registry: &Registry, user: &str, role: Role) -> usize {
    let stale = match role {
        Role::Admin => Role::User,
        Role::User => Role::Admin,
    };
    registry.disconnect_matching(
        &Target::user(UserId::new(user)).with_tag("role", stale.as_str()),
        DisconnectReason::RolesChanged,
    )
}

/// Which change ids were handled: every id up to `seen`, except the
/// `gaps` (ids skipped over, looked for until they expire).
#[derive(Debug)]
struct Cursor {
    seen: i64,
    gaps: BTreeMap<i64, Instant>,
}

impl Cursor {
    fn new(seen: i64) -> Self {
        Cursor {
            seen,
            gaps: BTreeMap::new(),
        }
    }

    /// Where the next read starts (exclusive): below the oldest gap.
    fn floor(&self) -> i64 {
        self.gaps
            .first_key_value()
            .map_or(self.seen, |(id, _)| id - 1)
    }

    /// The changes not handled before, from `read` (ascending ids).
    fn take(&mut self, read: &[RoleChange], now: Instant) -> Vec<RoleChange> {
        let mut new = Vec::new();
        for change in read {
            if change.id > self.seen {
                let skipped = (self.seen + 1)..change.id;
                for id in skipped.take(MAX_GAPS.saturating_sub(self.gaps.len())) {
                    self.gaps.insert(id, now);
                }
                self.seen = change.id;
                new.push(change.clone());
            } else if self.gaps.remove(&change.id).is_some() {
                new.push(change.clone());
            }
        }
        new
    }

    /// Forgets gaps older than [`GAP_WAIT`].
    fn expire(&mut self, now: Instant) {
        self.gaps
            .retain(|_, since| now.duration_since(*since) < GAP_WAIT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(ids: &[i64]) -> Vec<RoleChange> {
        ids.iter()
            .map(|&id| RoleChange {
                id,
                user_id: format!("u{id}"),
            })
            .collect()
    }

    fn ids(changes: Vec<RoleChange>) -> Vec<i64> {
        changes.into_iter().map(|c| c.id).collect()
    }

    #[test]
    fn each_change_is_taken_once_and_a_late_commit_is_not_skipped() {
        let now = Instant::now();
        let mut cursor = Cursor::new(3);
        assert_eq!(cursor.floor(), 3);
        // 5 is committed before 4.
        assert_eq!(ids(cursor.take(&changes(&[5]), now)), [5]);
        assert_eq!(cursor.floor(), 3, "4 is still looked for");
        assert!(cursor.take(&changes(&[5]), now).is_empty());
        assert_eq!(ids(cursor.take(&changes(&[4, 5, 6]), now)), [4, 6]);
        assert_eq!(cursor.floor(), 6);
    }

    #[test]
    fn a_gap_that_never_fills_is_given_up() {
        let now = Instant::now();
        let mut cursor = Cursor::new(0);
        assert_eq!(ids(cursor.take(&changes(&[2]), now)), [2]);
        cursor.expire(now + GAP_WAIT / 2);
        assert_eq!(cursor.floor(), 0);
        cursor.expire(now + GAP_WAIT);
        assert_eq!(cursor.floor(), 2);
    }

    #[test]
    fn a_jump_in_ids_remembers_a_bounded_number_of_gaps() {
        let mut cursor = Cursor::new(0);
        cursor.take(&changes(&[1_000_000]), Instant::now());
        assert_eq!(cursor.gaps.len(), MAX_GAPS);
        assert_eq!(cursor.seen, 1_000_000);
    }
}
