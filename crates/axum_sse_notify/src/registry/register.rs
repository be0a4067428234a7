//! Admitting a connection: the limits (with the places admissions hold),
//! the sign-ins that ended, the point a resume starts from (never before
//! the sign-in began), a client id asked back, and the insert, all under
//! the history's lock so that every event is either replayed or queued
//! live, never both.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use super::Registry;
use super::admission::Admission;
use super::history::ResetReason;
use super::index::{Entry, Indexes};
use super::lifecycle::ClientGuard;
use super::link::ClientLink;
use super::reason::DisconnectReason;
use super::registration::{Registration, Replay, Resume, StoredGap, reset_frame};
use crate::event_id::StreamId;
use crate::socket::WatchedSocket;
use crate::target::{ClientId, Identity, Tag};

/// Why a new connection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("the server holds its maximum of {max} connections")]
    TooManyClients { max: usize },
    #[error("this user already has {max} open connections")]
    TooManyForUser { max: usize },
    #[error("this address already has {max} open connections")]
    TooManyForAddress { max: usize },
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The sign-in the request came with ended (sign-out) while it was on
    /// its way to registering.
    #[error("this sign-in has ended")]
    SessionEnded,
}

/// Where a connection comes from, as far as the registry cares: the
/// client's address (for `per_address_max`) and its socket (so that an
/// end decided here also frees the socket). Both optional: benchmarks and
/// tests register without a socket.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    pub addr: Option<IpAddr>,
    pub socket: Option<Arc<dyn WatchedSocket>>,
}

impl Registry {
    /// Admits a connection from nowhere in particular (no address, no
    /// socket), from now on; see [`Registry::register_from`].
    pub fn register(
        self: &Arc<Self>,
        identity: &Identity,
        client_tags: Vec<Tag>,
    ) -> Result<Registration, RegisterError> {
        self.register_from(identity, client_tags, Peer::default(), Resume::Fresh)
    }

    /// Admits a connection, or says why not. Limits are checked under the
    /// same lock as the insert, so concurrent connects cannot overshoot.
    ///
    /// With the Redis bus reading only its own clients' users (the
    /// default, [`crate::Follow::Own`]), call [`crate::Bus::follow`] for
    /// the identity's user first and keep what it returns as long as the
    /// connection: else this process does not read the user's events.
    /// (`GET /api/sse`, [`crate::routes`], does both.)
    /// With [`Resume::After`], the client first gets what it missed (or an
    /// `sse-reset` saying it cannot), then live events, with no gap and
    /// nothing twice: it is registered under the history's lock, so every
    /// event is either before `until` (replayed) or after (queued live).
    pub fn register_from(
        self: &Arc<Self>,
        identity: &Identity,
        client_tags: Vec<Tag>,
        peer: Peer,
        resume: Resume<'_>,
    ) -> Result<Registration, RegisterError> {
        self.register_inner(identity, client_tags, peer, resume, None)
    }

    /// Holds a place for a connection that is not ready to register yet
    /// (it waits for the bus, or reads Redis, first): counted against the
    /// limits at once, so that what it does before registering is only
    /// done for connections that will be admitted.
    /// `replacing`: the client id the connection asks back (`client=`);
    /// if that connection is still registered from the same session, it
    /// will be replaced, so it does not count.
    pub fn admit(
        self: &Arc<Self>,
        identity: &Identity,
        addr: Option<IpAddr>,
        replacing: Option<ClientId>,
    ) -> Result<Admission, RegisterError> {
        let mut indexes = self.write();
        if indexes.ended.contains(&identity.session, Instant::now()) {
            return Err(RegisterError::SessionEnded);
        }
        self.check_limits(&indexes, identity, addr, replacing)?;
        indexes.pending.hold(&identity.user, addr);
        Ok(Admission {
            registry: self.clone(),
            user: identity.user.clone(),
            addr,
            released: false,
        })
    }

    /// [`Registry::register_from`] for a connection that holds a place:
    /// the place becomes the connection (or is given back if refused).
    pub fn register_admitted(
        self: &Arc<Self>,
        admission: Admission,
        identity: &Identity,
        client_tags: Vec<Tag>,
        peer: Peer,
        resume: Resume<'_>,
    ) -> Result<Registration, RegisterError> {
        self.register_inner(identity, client_tags, peer, resume, Some(admission))
    }

    /// Refuses a connection the limits leave no room for (admitted places
    /// not yet registered count like open streams), or one whose sign-in
    /// ended.
    fn check_limits(
        &self,
        indexes: &Indexes,
        identity: &Identity,
        addr: Option<IpAddr>,
        replacing: Option<ClientId>,
    ) -> Result<(), RegisterError> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(RegisterError::ShuttingDown);
        }
        let replaced = replacing
            .and_then(|id| indexes.clients.get(&id))
            .filter(|e| e.session == identity.session);
        let same_addr = replaced.is_some_and(|e| e.addr.is_some() && e.addr == addr);
        let (replaced, same_addr) = (usize::from(replaced.is_some()), usize::from(same_addr));
        if (indexes.clients.len() + indexes.pending.total).saturating_sub(replaced)
            >= self.config.max_clients
        {
            return Err(RegisterError::TooManyClients {
                max: self.config.max_clients,
            });
        }
        let of_user = (indexes.by_user.get(&identity.user).map_or(0, Vec::len)
            + indexes.pending.of_user(&identity.user)
            + self.remote_connections(&identity.user))
        .saturating_sub(replaced);
        if of_user >= self.config.per_user_max {
            return Err(RegisterError::TooManyForUser {
                max: self.config.per_user_max,
            });
        }
        let of_addr = addr.map_or(0, |addr| {
            (indexes.by_addr.get(&addr).copied().unwrap_or(0) + indexes.pending.of_addr(&addr))
                .saturating_sub(same_addr)
        });
        if of_addr >= self.config.per_address_max {
            return Err(RegisterError::TooManyForAddress {
                max: self.config.per_address_max,
            });
        }
        Ok(())
    }

    fn register_inner(
        self: &Arc<Self>,
        identity: &Identity,
        client_tags: Vec<Tag>,
        peer: Peer,
        resume: Resume<'_>,
        mut admission: Option<Admission>,
    ) -> Result<Registration, RegisterError> {
        let link = Arc::new(ClientLink::new(self.config.queue_len, peer.socket));
        let mut tags: Vec<Tag> = identity.tags.clone();
        for tag in client_tags {
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        let tags = tags.into_boxed_slice();
        let replay_tags = matches!(resume, Resume::After { .. }).then(|| tags.clone());
        let partition = self.partitions.of(&identity.user);
        let entry = Entry {
            // Below `MAX_PARTITIONS` (256).
            partition: partition as u16,
            user: identity.user.clone(),
            username: identity.username.as_str().into(),
            session: identity.session.clone(),
            tags,
            connected_at: SystemTime::now(),
            since: Instant::now(),
            addr: peer.addr,
            link: link.clone(),
        };
        let mut history = self.lock_history(partition);
        let now = Instant::now();
        let until = history.last();
        let mut reset = None;
        // The client's inbox position: what it has of the stored
        // notifications, whatever became of the history.
        let mut stored = None;
        let mut start_seq = history.seq();
        let (after, opening, claim) = match resume {
            Resume::Fresh => (None, None, None),
            Resume::After {
                last_event_id: text,
                client,
            } => {
                let sent = StreamId::parse(text);
                let client_seq = sent.and_then(|id| id.seq);
                let point = sent
                    .ok_or(ResetReason::Unparsable)
                    .and_then(|id| history.resume_point(&id.event, now))
                    .and_then(|after| {
                        // Never back before this sign-in began.
                        match identity.since {
                            Some(since) if history.reaches_before(after, since, now) => {
                                Err(ResetReason::TooOld)
                            }
                            _ => Ok(after),
                        }
                    });
                match point {
                    Ok(after) => {
                        // Left during the stored part of an earlier resume
                        // (or came from a process whose view of a shared
                        // stream's positions was behind): the rest comes
                        // from the inbox, less what the replay from
                        // `after` sends anyway.
                        let at = history.seq_at(after);
                        stored = match (client_seq, at) {
                            (Some(had), Some(upto)) if had < upto => Some(StoredGap {
                                after: had,
                                upto,
                                reset: None,
                                replayed: history.stored_after(after),
                            }),
                            _ => None,
                        };
                        start_seq = stored.as_ref().map(|gap| gap.after).or(at);
                        (Some(after), None, client)
                    }
                    Err(reason) => {
                        reset = Some(reason);
                        // A position ahead of the inbox's is not one of
                        // its own: such a client starts afresh.
                        stored = match (client_seq, history.seq()) {
                            (Some(had), Some(upto)) if had <= upto => Some(StoredGap {
                                after: had,
                                upto,
                                reset: Some(reason),
                                replayed: Vec::new(),
                            }),
                            _ => None,
                        };
                        start_seq = stored.as_ref().map(|gap| gap.after).or(history.seq());
                        let since = StreamId::new(history.id(until), start_seq);
                        (None, Some(reset_frame(reason, since)), None)
                    }
                }
            }
        };
        let start = history.id(after.unwrap_or(until));
        let mut replaced = None;
        let admitted = 'admit: {
            let mut indexes = self.write();
            // The place held (if any) becomes this connection: it no
            // longer counts as pending, whatever the outcome.
            if let Some(admission) = admission.as_mut() {
                admission.released = true;
                indexes.pending.release(&admission.user, admission.addr);
            }
            // Before a claim replaces anything: a draining server ends
            // streams as `Shutdown`, not as taken over.
            if self.shutting_down.load(Ordering::Acquire) {
                break 'admit Err(RegisterError::ShuttingDown);
            }
            if indexes.ended.contains(&identity.session, now) {
                break 'admit Err(RegisterError::SessionEnded);
            }
            let id = match claim {
                Some(old) => {
                    let stale = indexes
                        .clients
                        .get(&old)
                        .is_some_and(|e| e.session == identity.session);
                    if stale {
                        replaced = indexes.remove(old);
                    }
                    if indexes.reclaim(old, &identity.session, now) {
                        old
                    } else {
                        ClientId::random()
                    }
                }
                None => ClientId::random(),
            };
            if let Err(e) = self.check_limits(&indexes, identity, peer.addr, None) {
                break 'admit Err(e);
            }
            indexes.insert(id, entry);
            Ok(id)
        };
        drop(history);
        // A stale connection taken over ends even if the new one was
        // refused: it is gone from the registry either way.
        if let Some(old) = replaced {
            old.link.close(DisconnectReason::Replaced);
        }
        let id = admitted?;
        if let Some(reason) = reset {
            // Counted once admitted: only then is the `sse-reset` sent.
            self.count_reset(reason, 1);
        }
        // Without a position to resume from, the stream starts with the
        // inbox's unread notifications (when the app gives it one).
        let fresh = after.is_none() && stored.is_none();
        let replay = after.filter(|after| *after < until).map(|cursor| Replay {
            cursor,
            until,
            user: identity.user.clone(),
            session: identity.session.clone(),
            tags: replay_tags.unwrap_or_default(),
        });
        self.counters
            .connections_opened
            .fetch_add(1, Ordering::Relaxed);
        Ok(Registration {
            id,
            guard: ClientGuard::new(self.clone(), id, identity.user.clone(), link),
            start,
            start_seq,
            stored: stored.map(Box::new),
            opening,
            replay,
            fresh,
            finished: false,
            direct: false,
            dedupe: None,
        })
    }
}
