//! Registry tests: targeting, cleanup, overflow, limits, concurrency.

use super::*;
use crate::event::Event;
use crate::event_id::EventId;
use crate::target::{Identity, Recipient, SessionId, Tag, UserId};

pub(super) fn config() -> SseConfig {
    SseConfig {
        queue_len: 4,
        max_clients: 10_000,
        per_user_max: 100,
        ..SseConfig::default()
    }
}

pub(super) fn identity(user: &str, session: &str, tags: &[&str]) -> Identity {
    Identity {
        user: UserId::new(user),
        username: format!("name-{user}"),
        session: SessionId::new(session),
        tags: tags.iter().map(|t| Tag::parse(t).unwrap()).collect(),
        since: None,
    }
}

pub(super) fn event(n: u32) -> Event {
    Event::new("test", &serde_json::json!({ "n": n })).unwrap()
}

/// Pulls everything queued for a client, as text.
fn drain(reg: &mut Registration) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(frame) = reg.try_next() {
        out.push(String::from_utf8(frame.to_vec()).unwrap());
    }
    out
}

struct World {
    registry: Arc<Registry>,
    a1: Registration, // user a, session s1, page:home
    a2: Registration, // user a, session s2, page:settings
    b1: Registration, // user b, session s3, page:home, role:admin
    c1: Registration, // user c, session s4
}

fn world() -> World {
    let registry = Arc::new(Registry::new(config()));
    let a1 = registry
        .register(
            &identity("a", "s1", &[]),
            vec![Tag::parse("page:home").unwrap()],
        )
        .unwrap();
    let a2 = registry
        .register(
            &identity("a", "s2", &[]),
            vec![Tag::parse("page:settings").unwrap()],
        )
        .unwrap();
    let b1 = registry
        .register(
            &identity("b", "s3", &["role:admin"]),
            vec![Tag::parse("page:home").unwrap()],
        )
        .unwrap();
    let c1 = registry
        .register(&identity("c", "s4", &[]), vec![])
        .unwrap();
    World {
        registry,
        a1,
        a2,
        b1,
        c1,
    }
}

/// Sends one event and returns which of a1, a2, b1, c1 got it.
fn receivers(w: &mut World, target: Target) -> (usize, [bool; 4]) {
    let n = w.registry.send(&target, &event(1)).unwrap();
    let got = [
        drain(&mut w.a1).len() == 1,
        drain(&mut w.a2).len() == 1,
        drain(&mut w.b1).len() == 1,
        drain(&mut w.c1).len() == 1,
    ];
    (n, got)
}

#[test]
fn each_target_kind_reaches_exactly_its_clients() {
    let mut w = world();
    let a1 = w.a1.id;
    let c1 = w.c1.id;
    let cases = [
        (Target::all(), [true, true, true, true]),
        (Target::user(UserId::new("a")), [true, true, false, false]),
        (Target::user(UserId::new("b")), [false, false, true, false]),
        (Target::user(UserId::new("nobody")), [false; 4]),
        (
            Target::session(SessionId::new("s2")),
            [false, true, false, false],
        ),
        (Target::clients([a1, c1]), [true, false, false, true]),
        (Target::clients([a1, a1]), [true, false, false, false]),
        (Target::tag("page", "home"), [true, false, true, false]),
        (Target::tag("role", "admin"), [false, false, true, false]),
        (Target::tag("page", "nowhere"), [false; 4]),
        // Combinations narrow.
        (
            Target::user(UserId::new("a")).with_tag("page", "home"),
            [true, false, false, false],
        ),
        (
            Target::tag("page", "home").with_tag("role", "admin"),
            [false, false, true, false],
        ),
        (
            Target::session(SessionId::new("s1")).with_tag("page", "settings"),
            [false; 4],
        ),
        (
            Target::clients([a1, c1]).with_tag("page", "home"),
            [true, false, false, false],
        ),
    ];
    for (target, expected) in cases {
        let (n, got) = receivers(&mut w, target.clone());
        assert_eq!(got, expected, "{target:?}");
        assert_eq!(n, expected.iter().filter(|x| **x).count(), "{target:?}");
    }
}

#[test]
fn a_broadcast_is_framed_once_with_an_id() {
    let mut w = world();
    w.registry.send(&Target::all(), &event(7)).unwrap();
    let a = drain(&mut w.a1);
    let c = drain(&mut w.c1);
    assert_eq!(a, c);
    assert!(a[0].starts_with("id: "), "{a:?}");
    assert!(a[0].ends_with("event: test\ndata: {\"n\":7}\n\n"), "{a:?}");
    // Ids increase, within one epoch.
    w.registry.send(&Target::all(), &event(8)).unwrap();
    let id = |s: &str| EventId::parse(&s[4..s.find('\n').unwrap()]).unwrap();
    let (first, second) = (id(&a[0]), id(&drain(&mut w.a1)[0]));
    assert_eq!(first.epoch, second.epoch);
    assert!(second.position > first.position);
}

#[test]
fn the_indexes_and_target_selects_agree_on_who_receives_what() {
    // Live sends find receivers through the indexes; replays filter the
    // history with `Target::selects`: the same clients, always.
    let w = world();
    let clients = w.registry.clients(&ClientFilter::default());
    let a1 = w.a1.id();
    let targets = [
        Target::all(),
        Target::user(UserId::new("a")),
        Target::user(UserId::new("b")).with_tag("role", "admin"),
        Target::session(SessionId::new("s2")),
        Target::tag("page", "home"),
        Target::tag("page", "home").with_tag("role", "admin"),
        Target::tag("page", "nowhere"),
        Target::clients([a1, w.c1.id()]),
        Target::clients([a1]).with_tag("page", "settings"),
        Target::user(UserId::new("a")).with_tag("page", "home"),
    ];
    for target in targets {
        let mut by_index = Vec::new();
        w.registry
            .read()
            .for_each_match(&target, |id, _| by_index.push(id));
        by_index.sort();
        let mut by_rule: Vec<ClientId> = clients
            .iter()
            .filter(|c| {
                target.selects(&Recipient {
                    client: c.id,
                    user: &c.user_id,
                    session: &c.session,
                    tags: &c.tags,
                })
            })
            .map(|c| c.id)
            .collect();
        by_rule.sort();
        assert_eq!(by_index, by_rule, "{target:?}");
    }
}

#[test]
fn oversized_payloads_are_refused_not_truncated() {
    let mut w = world();
    let max = w.registry.config().max_payload;
    let big = Event::text("big", "x".repeat(max + 1)).unwrap();
    assert_eq!(
        w.registry.send(&Target::all(), &big),
        Err(EventError::PayloadTooLarge { size: max + 1, max })
    );
    assert!(drain(&mut w.a1).is_empty());
    let fits = Event::text("big", "x".repeat(max)).unwrap();
    assert_eq!(w.registry.send(&Target::all(), &fits), Ok(4));
}

#[test]
fn every_kind_of_end_cleans_every_index() {
    let empty = IndexSizes::default();

    // Dropping the registration (the stream ended: client closed,
    // write error, idle timeout).
    let w = world();
    let registry = w.registry.clone();
    drop(w);
    assert_eq!(registry.index_sizes(), empty);
    assert_eq!(registry.stats().connections_closed, 4);

    // Disconnect by the server, then the stream ends.
    let w = world();
    assert!(w.registry.disconnect(w.a1.id, DisconnectReason::Kicked));
    assert_eq!(w.a1.end_reason(), Some(DisconnectReason::Kicked));
    assert_eq!(
        w.registry
            .disconnect_matching(&Target::tag("role", "admin"), DisconnectReason::Kicked),
        1
    );
    let registry = w.registry.clone();
    assert_eq!(registry.len(), 2);
    drop(w);
    assert_eq!(registry.index_sizes(), empty);

    // Shutdown.
    let w = world();
    w.registry.shutdown();
    assert_eq!(w.registry.index_sizes(), empty);
    for reg in [&w.a1, &w.a2, &w.b1, &w.c1] {
        assert_eq!(reg.end_reason(), Some(DisconnectReason::Shutdown));
    }
    assert_eq!(
        w.registry.register(&identity("z", "s9", &[]), vec![]).err(),
        Some(RegisterError::ShuttingDown)
    );
}

#[test]
fn overflow_disconnects_only_the_slow_client() {
    let mut w = world();
    let queue_len = w.registry.config().queue_len;
    // a1 keeps up; everyone else never reads.
    for n in 0..queue_len as u32 {
        w.registry
            .send(&Target::user(UserId::new("a")), &event(n))
            .unwrap();
        drain(&mut w.a1);
    }
    // a2 is now full; the next send overflows it and only it.
    let reached = w
        .registry
        .send(&Target::user(UserId::new("a")), &event(99))
        .unwrap();
    assert_eq!(reached, 1);
    assert_eq!(w.a2.end_reason(), Some(DisconnectReason::QueueOverflow));
    assert_eq!(w.a1.end_reason(), None);
    assert_eq!(w.registry.len(), 3);
    assert_eq!(drain(&mut w.a1).len(), 1);
    // Others are untouched.
    assert_eq!(w.registry.send(&Target::all(), &event(100)).unwrap(), 3);
}

#[test]
fn one_address_cannot_take_every_slot() {
    let registry = Arc::new(Registry::new(SseConfig {
        max_clients: 100,
        per_user_max: 100,
        per_address_max: 3,
        ..SseConfig::default()
    }));
    let from = |ip: &str| Peer {
        addr: Some(ip.parse().unwrap()),
        socket: None,
    };
    // Three users from one address fill its share, whoever they are.
    let mut held = Vec::new();
    for user in ["u1", "u2", "u3"] {
        held.push(
            registry
                .register_from(
                    &identity(user, user, &[]),
                    vec![],
                    from("10.0.0.1"),
                    Resume::Fresh,
                )
                .unwrap(),
        );
    }
    assert_eq!(
        registry
            .register_from(
                &identity("u4", "s", &[]),
                vec![],
                from("10.0.0.1"),
                Resume::Fresh
            )
            .err(),
        Some(RegisterError::TooManyForAddress { max: 3 })
    );
    // Another address is not affected, nor is a connection without one.
    let other = registry
        .register_from(
            &identity("u4", "s", &[]),
            vec![],
            from("10.0.0.2"),
            Resume::Fresh,
        )
        .unwrap();
    let _unknown = registry
        .register(&identity("u5", "s", &[]), vec![])
        .unwrap();
    assert_eq!(registry.index_sizes().addresses, 2);
    // A slot given back can be taken again; counts go with the clients.
    held.pop();
    let again = registry
        .register_from(
            &identity("u4", "s", &[]),
            vec![],
            from("10.0.0.1"),
            Resume::Fresh,
        )
        .unwrap();
    drop((held, other, again));
    assert_eq!(registry.index_sizes().addresses, 0);
}

#[test]
fn limits_are_enforced() {
    let registry = Arc::new(Registry::new(SseConfig {
        max_clients: 3,
        per_user_max: 2,
        ..SseConfig::default()
    }));
    let a = identity("a", "s", &[]);
    let _r1 = registry.register(&a, vec![]).unwrap();
    let r2 = registry.register(&a, vec![]).unwrap();
    assert_eq!(
        registry.register(&a, vec![]).err(),
        Some(RegisterError::TooManyForUser { max: 2 })
    );
    let _r3 = registry.register(&identity("b", "t", &[]), vec![]).unwrap();
    assert_eq!(
        registry.register(&identity("c", "u", &[]), vec![]).err(),
        Some(RegisterError::TooManyClients { max: 3 })
    );
    drop(r2);
    assert!(registry.register(&a, vec![]).is_ok());
}

#[test]
fn listing_filters_and_stats() {
    let w = world();
    let all = w.registry.clients(&ClientFilter::default());
    assert_eq!(all.len(), 4);
    let by_name = w.registry.clients(&ClientFilter {
        user_or_name: Some("name-a".into()),
        ..Default::default()
    });
    let by_id = w.registry.clients(&ClientFilter {
        user_or_name: Some("a".into()),
        ..Default::default()
    });
    assert_eq!(by_name, by_id);
    assert_eq!(by_id.len(), 2);
    let by_session = w.registry.clients(&ClientFilter {
        session: Some(SessionId::new("s3")),
        ..Default::default()
    });
    assert_eq!(by_session.len(), 1);
    assert_eq!(by_session[0].id, w.b1.id);
    assert_eq!(
        by_session[0].tags,
        vec![
            Tag::parse("role:admin").unwrap(),
            Tag::parse("page:home").unwrap()
        ]
    );
    let by_ids = w.registry.clients(&ClientFilter {
        clients: Some(vec![w.c1.id, w.a2.id]),
        ..Default::default()
    });
    assert_eq!(by_ids.len(), 2);

    let stats = w.registry.stats();
    assert_eq!(stats.total_clients, 4);
    assert_eq!(stats.clients_per_user.get("name-a"), Some(&2));
    assert_eq!(stats.last_event_at, None);
    w.registry.send(&Target::all(), &event(1)).unwrap();
    let stats = w.registry.stats();
    assert_eq!(stats.events_published, 1);
    assert!(stats.last_event_at.is_some());
    assert!(stats.aggregate_only().clients_per_user.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_connect_send_disconnect_leaves_an_empty_registry() {
    let registry = Arc::new(Registry::new(SseConfig {
        queue_len: 2,
        max_clients: 100_000,
        per_user_max: 100_000,
        ..SseConfig::default()
    }));
    let mut tasks = Vec::new();
    for t in 0..16u32 {
        let registry = registry.clone();
        tasks.push(tokio::spawn(async move {
            let mut held = Vec::new();
            for i in 0..300u32 {
                let who = identity(
                    &format!("u{}", i % 7),
                    &format!("s{t}-{}", i % 5),
                    &["role:user"],
                );
                let tags = vec![Tag::new("page", &format!("p{}", i % 3)).unwrap()];
                if let Ok(reg) = registry.register(&who, tags) {
                    held.push(reg);
                }
                let target = match i % 4 {
                    0 => Target::all(),
                    1 => Target::user(UserId::new(format!("u{}", i % 7))),
                    2 => Target::tag("page", "p1"),
                    _ => Target::session(SessionId::new(format!("s{t}-1"))),
                };
                registry.send(&target, &event(i)).unwrap();
                if i % 3 == 0 && !held.is_empty() {
                    let reg = held.swap_remove((i as usize * 7) % held.len());
                    if i % 2 == 0 {
                        registry.disconnect(reg.id, DisconnectReason::Kicked);
                    }
                    drop(reg);
                }
                if i % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            drop(held);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(registry.index_sizes(), IndexSizes::default());
    let stats = registry.stats();
    assert_eq!(stats.connections_opened, stats.connections_closed);
    assert_eq!(stats.connections_opened, 16 * 300);
}

#[test]
fn a_stale_connection_taken_over_ends_even_when_the_new_one_is_refused() {
    let registry = Arc::new(Registry::new(SseConfig {
        per_address_max: 1,
        ..config()
    }));
    let from = |addr: &str| Peer {
        addr: Some(addr.parse().unwrap()),
        socket: None,
    };
    let ann = identity("ann", "s1", &[]);
    let old = registry
        .register_from(&ann, vec![], from("10.0.0.1"), Resume::Fresh)
        .unwrap();
    let start = old.start().to_string();
    // Another user fills the address the reconnect comes from.
    let _bob = registry
        .register_from(
            &identity("bob", "s2", &[]),
            vec![],
            from("10.0.0.2"),
            Resume::Fresh,
        )
        .unwrap();
    let refused = registry.register_from(
        &ann,
        vec![],
        from("10.0.0.2"),
        Resume::After {
            last_event_id: &start,
            client: Some(old.id()),
        },
    );
    assert!(matches!(
        refused,
        Err(RegisterError::TooManyForAddress { .. })
    ));
    assert_eq!(old.end_reason(), Some(DisconnectReason::Replaced));
    assert_eq!(registry.len(), 1, "only bob's connection is left");
}

#[test]
fn a_reconnect_takes_back_the_id_of_a_connection_of_its_own_session_only() {
    let registry = Arc::new(Registry::new(config()));
    let ann = identity("ann", "s1", &[]);
    let first = registry.register(&ann, vec![]).unwrap();
    let (old_id, start) = (first.id(), first.start().to_string());
    drop(first);
    let resume = |client| Resume::After {
        last_event_id: &start,
        client: Some(client),
    };
    // Another session of the same user cannot take it.
    let other = registry
        .register_from(
            &identity("ann", "s2", &[]),
            vec![],
            Peer::default(),
            resume(old_id),
        )
        .unwrap();
    assert_ne!(other.id(), old_id);
    // Its own session can, once.
    let again = registry
        .register_from(&ann, vec![], Peer::default(), resume(old_id))
        .unwrap();
    assert_eq!(again.id(), old_id);
    // Still registered under that id: a second claim replaces it.
    let third = registry
        .register_from(&ann, vec![], Peer::default(), resume(old_id))
        .unwrap();
    assert_eq!(third.id(), old_id);
    assert_eq!(again.end_reason(), Some(DisconnectReason::Replaced));
    // The replaced guard's drop does not unregister its successor.
    drop(again);
    assert_eq!(registry.len(), 2);
    drop(third);
    drop(other);
    assert!(registry.is_empty());
}

/// `on_session_end` hears exactly the sessions kicked as sessions (what a
/// sign-out sends), not users, tagged targets or other reasons.
#[test]
fn session_end_hooks_hear_kicked_sessions_only() {
    let registry = Registry::new(config());
    let heard = Arc::new(Mutex::new(Vec::new()));
    let log = heard.clone();
    registry.on_session_end(move |session| {
        log.lock().unwrap().push(session.as_str().to_string());
    });
    registry.disconnect_matching(
        &Target::session(SessionId::new("s1")),
        DisconnectReason::Kicked,
    );
    registry.disconnect_matching(&Target::user(UserId::new("u")), DisconnectReason::Kicked);
    registry.disconnect_matching(
        &Target::session(SessionId::new("s2")).with_tag("role", "admin"),
        DisconnectReason::Kicked,
    );
    registry.disconnect_matching(
        &Target::session(SessionId::new("s3")),
        DisconnectReason::RolesChanged,
    );
    registry.disconnect_matching(
        &Target::session(SessionId::new("s4")),
        DisconnectReason::Kicked,
    );
    assert_eq!(*heard.lock().unwrap(), ["s1", "s4"]);
}
