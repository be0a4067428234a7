//! The indexes behind targeting: clients by id, user, session and tag.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::admission::{EndedSessions, Pending};
use super::link::ClientLink;
use super::listing::ClientFilter;
use crate::target::{ClientId, Scope, SessionId, Tag, Target, UserId};

/// One connection as the registry sees it.
pub(super) struct Entry {
    /// The partition of `user` (see [`crate::partition`]).
    pub(super) partition: u16,
    pub(super) user: UserId,
    pub(super) username: Arc<str>,
    pub(super) session: SessionId,
    pub(super) tags: Box<[Tag]>,
    pub(super) connected_at: SystemTime,
    pub(super) since: Instant,
    pub(super) addr: Option<IpAddr>,
    pub(super) link: Arc<ClientLink>,
}

impl Entry {
    pub(super) fn has_tags(&self, tags: &[Tag]) -> bool {
        tags.iter().all(|t| self.tags.contains(t))
    }
}

pub(super) struct Indexes {
    pub(super) clients: HashMap<ClientId, Entry>,
    pub(super) by_user: HashMap<UserId, Vec<ClientId>>,
    pub(super) by_session: HashMap<SessionId, Vec<ClientId>>,
    pub(super) by_tag: HashMap<Tag, HashSet<ClientId>>,
    /// Open connections per client address (a count: nothing targets an
    /// address).
    pub(super) by_addr: HashMap<IpAddr, usize>,
    /// Clients whose connection ended recently, with their session: a
    /// reconnect from the same session may take the id back (`client=`),
    /// so that events sent to that id are replayed to it. Bounded by
    /// count and age.
    departed: HashMap<ClientId, (SessionId, Instant)>,
    departed_order: VecDeque<(ClientId, Instant)>,
    departed_max: usize,
    departed_age: Duration,
    /// Places held by admissions not yet registered.
    pub(super) pending: Pending,
    /// Sessions whose streams were ended recently: refused at registration.
    pub(super) ended: EndedSessions,
}

impl Indexes {
    pub(super) fn new(departed_max: usize, departed_age: Duration) -> Self {
        Indexes {
            clients: HashMap::new(),
            by_user: HashMap::new(),
            by_session: HashMap::new(),
            by_tag: HashMap::new(),
            by_addr: HashMap::new(),
            departed: HashMap::new(),
            departed_order: VecDeque::new(),
            departed_max,
            departed_age,
            pending: Pending::default(),
            // Sign-outs within `ENDED_FOR`, at most; a flood beyond it
            // forgets the oldest first.
            ended: EndedSessions::new(departed_max.saturating_mul(4).max(4096)),
        }
    }

    /// Removes the client only if it is still the connection `link`
    /// belongs to (its id may have been taken over by a reconnect).
    pub(super) fn remove_link(&mut self, id: ClientId, link: &Arc<ClientLink>) -> Option<Entry> {
        let same = self
            .clients
            .get(&id)
            .is_some_and(|entry| Arc::ptr_eq(&entry.link, link));
        if same { self.remove(id) } else { None }
    }

    /// Whether `id` left recently from `session`; if so, it is taken back
    /// (forgotten as departed).
    pub(super) fn reclaim(&mut self, id: ClientId, session: &SessionId, now: Instant) -> bool {
        self.trim_departed(now);
        match self.departed.get(&id) {
            Some((from, _)) if from == session => {
                self.departed.remove(&id);
                true
            }
            _ => false,
        }
    }

    fn remember_departure(&mut self, id: ClientId, session: SessionId, now: Instant) {
        if self.departed_max == 0 {
            return;
        }
        self.departed.insert(id, (session, now));
        self.departed_order.push_back((id, now));
        self.trim_departed(now);
    }

    fn trim_departed(&mut self, now: Instant) {
        while let Some(&(id, at)) = self.departed_order.front() {
            let over = self.departed_order.len() > self.departed_max
                || now.saturating_duration_since(at) > self.departed_age;
            if !over {
                break;
            }
            self.departed_order.pop_front();
            // Only if this record is the current one for the id.
            if self.departed.get(&id).is_some_and(|(_, when)| *when == at) {
                self.departed.remove(&id);
            }
        }
    }
    pub(super) fn insert(&mut self, id: ClientId, entry: Entry) {
        self.by_user.entry(entry.user.clone()).or_default().push(id);
        self.by_session
            .entry(entry.session.clone())
            .or_default()
            .push(id);
        for tag in entry.tags.iter() {
            self.by_tag.entry(tag.clone()).or_default().insert(id);
        }
        if let Some(addr) = entry.addr {
            *self.by_addr.entry(addr).or_default() += 1;
        }
        self.clients.insert(id, entry);
    }

    /// Removes the client and every index entry pointing at it; empty
    /// index buckets go too, so nothing grows with clients that left.
    pub(super) fn remove(&mut self, id: ClientId) -> Option<Entry> {
        let entry = self.clients.remove(&id)?;
        remove_from_bucket(&mut self.by_user, &entry.user, id);
        remove_from_bucket(&mut self.by_session, &entry.session, id);
        if let Some(addr) = entry.addr
            && let Some(count) = self.by_addr.get_mut(&addr)
        {
            *count -= 1;
            if *count == 0 {
                self.by_addr.remove(&addr);
            }
        }
        for tag in entry.tags.iter() {
            if let Some(set) = self.by_tag.get_mut(tag) {
                set.remove(&id);
                if set.is_empty() {
                    self.by_tag.remove(tag);
                }
            }
        }
        self.remember_departure(id, entry.session.clone(), Instant::now());
        Some(entry)
    }

    /// Calls `f` for every client the target selects, each once.
    pub(super) fn for_each_match(&self, target: &Target, mut f: impl FnMut(ClientId, &Entry)) {
        let tags = target.tags();
        let mut visit = |id: &ClientId| {
            if let Some(entry) = self.clients.get(id)
                && entry.has_tags(tags)
            {
                f(*id, entry);
            }
        };
        match target.scope() {
            Scope::All => match tags
                .iter()
                .map(|t| self.by_tag.get(t))
                .min_by_key(|set| set.map_or(0, HashSet::len))
            {
                // No tags: everyone.
                None => self.clients.keys().for_each(&mut visit),
                // Start from the smallest tag bucket; an unknown tag
                // matches nobody.
                Some(Some(set)) => set.iter().for_each(&mut visit),
                Some(None) => {}
            },
            Scope::User(user) => {
                if let Some(ids) = self.by_user.get(user) {
                    ids.iter().for_each(&mut visit);
                }
            }
            Scope::Session(session) => {
                if let Some(ids) = self.by_session.get(session) {
                    ids.iter().for_each(&mut visit);
                }
            }
            Scope::Clients(ids) => {
                let mut seen = HashSet::with_capacity(ids.len());
                for id in ids {
                    if seen.insert(*id) {
                        visit(id);
                    }
                }
            }
        }
    }
}

fn remove_from_bucket<K: std::hash::Hash + Eq>(
    index: &mut HashMap<K, Vec<ClientId>>,
    key: &K,
    id: ClientId,
) {
    if let Some(ids) = index.get_mut(key) {
        ids.retain(|x| *x != id);
        if ids.is_empty() {
            index.remove(key);
        }
    }
}

impl ClientFilter {
    pub(super) fn matches(&self, id: ClientId, entry: &Entry) -> bool {
        self.user_or_name
            .as_deref()
            .is_none_or(|u| entry.user.as_str() == u || &*entry.username == u)
            && self.session.as_ref().is_none_or(|s| &entry.session == s)
            && self.clients.as_ref().is_none_or(|ids| ids.contains(&id))
    }
}
