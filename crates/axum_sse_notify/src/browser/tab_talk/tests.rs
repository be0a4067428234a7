use super::*;

fn event(name: &str, id: &str) -> WireEvent {
    WireEvent {
        name: name.into(),
        id: Some(id.into()),
        data: format!("{{\"n\":\"{id}\"}}"),
    }
}

fn id(n: u64) -> String {
    format!("00000000000000aa-{n}-0")
}

/// The server's history: `connected`, then notifications 1..=n.
fn history(n: u64) -> Vec<WireEvent> {
    let mut events = vec![WireEvent {
        name: "connected".into(),
        id: Some(id(0)),
        data: r#"{"clientId":"c-1"}"#.into(),
    }];
    events.extend((1..=n).map(|i| event("notification", &id(i))));
    events
}

/// What a stream resumed after `last` replays: everything after it (the
/// server's guarantee), preceded by a fresh `connected` that repeats it.
fn replay_after(all: &[WireEvent], last: Option<&str>) -> Vec<WireEvent> {
    let start = last
        .and_then(|l| all.iter().position(|e| e.id.as_deref() == Some(l)))
        .map_or(0, |p| p + 1);
    let mut events = vec![WireEvent {
        name: "connected".into(),
        id: last.map(str::to_string),
        data: r#"{"clientId":"c-1"}"#.into(),
    }];
    events.extend(
        all[start..]
            .iter()
            .filter(|e| e.name != "connected")
            .cloned(),
    );
    events
}

/// The notifications a tab delivered, by number.
fn numbers(delivered: &[WireEvent]) -> Vec<u64> {
    delivered
        .iter()
        .filter(|e| e.name == "notification")
        .filter_map(|e| e.id.as_deref()?.split('-').nth(1)?.parse().ok())
        .collect()
}

#[test]
fn a_stored_notification_is_known_by_its_inbox_id_under_any_stream_id() {
    let mut tab = Tab::default();
    assert!(
        tab.receive(event("notification", "00000000000000aa-3-0.3:17"))
            .is_some()
    );
    // After a restart: another epoch, another position, the same row.
    assert!(
        tab.receive(event("notification", "00000000000000bb-1-0.9:17"))
            .is_none()
    );
    assert!(
        tab.receive(event("notification", "00000000000000bb-1-0.9:18"))
            .is_some()
    );
    // Live events keep their whole id as their name.
    assert!(
        tab.receive(event("ping", "00000000000000bb-2-0.9"))
            .is_some()
    );
    assert!(
        tab.receive(event("ping", "00000000000000bb-3-0.9"))
            .is_some()
    );
}

#[test]
fn an_event_seen_once_is_dropped_the_second_time() {
    let mut tab = Tab::default();
    assert!(tab.receive(event("notification", &id(1))).is_some());
    assert!(tab.receive(event("notification", &id(1))).is_none());
    // Same id, another name: another event (an `inbox` summary carries
    // the position of the last event before it).
    assert!(tab.receive(event("inbox", &id(1))).is_some());
    // Events without an id cannot be told apart: all are delivered.
    let anonymous = WireEvent {
        name: "notification".into(),
        id: None,
        data: "{}".into(),
    };
    assert!(tab.receive(anonymous.clone()).is_some());
    assert!(tab.receive(anonymous).is_some());
    assert_eq!(tab.resume().last_id, Some(id(1).as_str()));
}

#[test]
fn the_streams_own_events_are_never_dropped() {
    let mut tab = Tab::default();
    tab.receive(event("notification", &id(5)));
    // A resumed stream's `connected` repeats the last id.
    let connected = WireEvent {
        name: "connected".into(),
        id: Some(id(5)),
        data: r#"{"clientId":"abc"}"#.into(),
    };
    assert!(tab.receive(connected.clone()).is_some());
    assert!(tab.receive(connected).is_some());
    assert_eq!(tab.client(), Some("abc"));
}

#[test]
fn what_is_remembered_is_bounded() {
    let mut tab = Tab::default();
    for n in 0..=SEEN_MAX as u64 {
        assert!(tab.receive(event("notification", &id(n))).is_some());
    }
    assert_eq!(tab.seen.order.len(), SEEN_MAX);
    // The oldest was forgotten, the newest is still known.
    assert!(tab.receive(event("notification", &id(0))).is_some());
    assert!(
        tab.receive(event("notification", &id(SEEN_MAX as u64)))
            .is_none()
    );
}

/// A leader relays 1..=12 to two followers; the second is ahead of the
/// first when the leader dies (the relays of 9 and 10 have reached it,
/// not yet the first). The first takes over, resumes from where it is,
/// and relays the replay; the relays still in flight to it arrive
/// afterwards. Every tab ends with 1..=20 once each, in order.
#[test]
fn a_hand_over_loses_nothing_and_repeats_nothing() {
    let all = history(20);
    let mut leader = Tab::default();
    let mut behind = Tab::default();
    let mut ahead = Tab::default();
    let (mut got_leader, mut got_behind, mut got_ahead) = (Vec::new(), Vec::new(), Vec::new());

    for event in &all[..=12] {
        let Some(event) = leader.receive(event.clone()) else {
            continue;
        };
        got_leader.push(event.clone());
        let number = numbers(std::slice::from_ref(&event)).first().copied();
        let relay = Message::Event(event);
        got_ahead.extend(ahead.handle(relay.clone(), false).deliver);
        // 9..=12 are still on their way to `behind`.
        if number.is_none_or(|n| n <= 8) {
            got_behind.extend(behind.handle(relay, false).deliver);
        }
    }
    assert_eq!(numbers(&got_leader), (1..=12).collect::<Vec<_>>());
    drop(leader);

    // `behind` takes the lock: its stream resumes after 8.
    assert_eq!(behind.resume().last_id, Some(id(8).as_str()));
    assert_eq!(behind.resume().client, Some("c-1"));
    let replay = replay_after(&all, behind.resume().last_id.map(str::to_string).as_deref());
    // The dead leader's last relays reach it first (one sender's
    // messages arrive in order), then its own stream.
    for event in &all[9..=12] {
        got_behind.extend(behind.handle(Message::Event(event.clone()), true).deliver);
    }
    for event in replay {
        let Some(event) = behind.receive(event) else {
            continue;
        };
        got_behind.push(event.clone());
        got_ahead.extend(ahead.handle(Message::Event(event), false).deliver);
    }
    let expected: Vec<u64> = (1..=20).collect();
    assert_eq!(numbers(&got_behind), expected);
    assert_eq!(numbers(&got_ahead), expected);
}

#[test]
fn a_tab_that_joins_learns_the_leaders_place_unless_it_has_its_own() {
    let mut leader = Tab::default();
    leader.receive(history(3).remove(0));
    leader.receive(event("notification", &id(3)));
    leader.learn(["notification".to_string()]);
    let sync = leader.sync(ConnectionState::Open);

    let mut fresh = Tab::default();
    let reaction = fresh.handle(sync.clone(), false);
    assert_eq!(reaction.state, Some(ConnectionState::Open));
    assert_eq!(reaction.client.as_deref(), Some("c-1"));
    assert_eq!(fresh.resume().last_id, Some(id(3).as_str()));
    assert_eq!(fresh.names().collect::<Vec<_>>(), ["notification"]);

    let mut own = Tab::default();
    own.receive(event("notification", &id(2)));
    own.handle(sync, false);
    assert_eq!(own.resume().last_id, Some(id(2).as_str()));
}

#[test]
fn a_leader_that_gives_up_closes_every_tab_one_that_leaves_hands_over() {
    let mut tab = Tab::default();
    let reconnecting = ConnectionState::Reconnecting { attempt: 2 };
    let reaction = tab.handle(
        Message::State {
            state: reconnecting.clone(),
        },
        false,
    );
    assert_eq!((reaction.state, reaction.close), (Some(reconnecting), None));
    // Signed out: the same cookie signs out every tab; trying again in
    // turn would only repeat the 401.
    let closed = ConnectionState::Closed {
        reason: "signed out (401)".into(),
    };
    let reaction = tab.handle(
        Message::State {
            state: closed.clone(),
        },
        false,
    );
    assert_eq!(reaction.state, Some(closed));
    assert_eq!(reaction.close.as_deref(), Some("signed out (401)"));
    // A page that leaves hands over: the next tab connects.
    let reaction = tab.handle(Message::Leaving, false);
    assert_eq!(reaction.state, Some(ConnectionState::Connecting));
    assert_eq!(reaction.close, None);
    // A leader ignores what another leader said about its own stream:
    // a predecessor's last `Closed` does not close its successor.
    assert_eq!(tab.handle(Message::Leaving, true).state, None);
    let late = tab.handle(
        Message::State {
            state: ConnectionState::Closed {
                reason: "gave up after 3 attempts".into(),
            },
        },
        true,
    );
    assert_eq!((late.state, late.close), (None, None));
}

/// The new leader's own stream may get ahead of its predecessor's last
/// relays (two senders, no order between them): those relays are
/// delivered once and do not move its resume point back.
#[test]
fn late_relays_do_not_move_a_new_leader_back() {
    let all = history(6);
    let mut leader = Tab::default();
    for event in &all[..=2] {
        leader.receive(event.clone());
    }
    // Its stream resumes after 2 and delivers 3..=6 first.
    let mut got: Vec<WireEvent> = Vec::new();
    for event in replay_after(&all, Some(&id(2))) {
        got.extend(leader.receive(event));
    }
    // Then the old leader's relays of 3 and 4 arrive.
    for event in &all[3..=4] {
        got.extend(leader.handle(Message::Event(event.clone()), true).deliver);
    }
    assert_eq!(numbers(&got), [3, 4, 5, 6]);
    assert_eq!(leader.resume().last_id, Some(id(6).as_str()));
}

#[test]
fn the_leader_listens_for_every_name_a_tab_asks_for() {
    let mut leader = Tab::default();
    leader.learn(["notification".to_string()]);
    let join = Message::Join {
        names: vec![
            "notification".into(),
            "order-shipped".into(),
            "connected".into(),
        ],
    };
    let reaction = leader.handle(join.clone(), true);
    assert!(reaction.sync);
    assert_eq!(reaction.attach, ["order-shipped"]);

    // A follower learns the names too (it may lead later), attaches none.
    let mut follower = Tab::default();
    let reaction = follower.handle(join, false);
    assert!(!reaction.sync);
    assert!(reaction.attach.is_empty());
    assert_eq!(
        follower.names().collect::<Vec<_>>(),
        ["notification", "order-shipped"]
    );

    let many = (0..NAMES_MAX + 10).map(|n| format!("name-{n}"));
    leader.learn(many);
    assert_eq!(leader.names().count(), NAMES_MAX);
    // Its own names are never refused.
    assert!(leader.listen_for("its-own"));
    assert!(!leader.listen_for("its-own"));
    assert!(!leader.listen_for("connected"));
    assert_eq!(leader.names().count(), NAMES_MAX + 1);
}

#[test]
fn messages_survive_the_channel() {
    let mut tab = Tab::default();
    tab.receive(history(1).remove(0));
    tab.learn(["notification".to_string(), "order-shipped".to_string()]);
    let messages = [
        Message::Event(event("notification", &id(1))),
        Message::Event(WireEvent {
            name: "notification".into(),
            id: None,
            data: String::new(),
        }),
        Message::State {
            state: ConnectionState::Reconnecting { attempt: 3 },
        },
        Message::State {
            state: ConnectionState::Closed {
                reason: "signed out (401)".into(),
            },
        },
        Tab::default().sync(ConnectionState::Connecting),
        tab.sync(ConnectionState::Open),
        Message::Names { names: vec![] },
        Message::Beat {
            state: ConnectionState::Open,
        },
        Message::Join {
            names: vec!["a".into()],
        },
        Message::Leaving,
    ];
    for message in messages {
        assert_eq!(Message::from_parts(&message.to_parts()), Some(message));
    }
    let parts = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // Anything else on the channel is ignored.
    for bad in [
        parts(&[]),
        parts(&["e", "only-a-name"]),
        parts(&["s", "reconnecting", "many"]),
        parts(&["s", "sleeping", ""]),
        parts(&["l", "extra"]),
        parts(&["?"]),
    ] {
        assert_eq!(Message::from_parts(&bad), None, "{bad:?}");
    }
}

#[test]
fn a_silent_leader_is_given_up_on_after_the_patience() {
    // Checked every beat, as the tab's ticker does.
    let mut watch = Watch::new(0, 0.0);
    let mut now = 0;
    let mut stale_at = None;
    while now < 3 * PATIENCE && stale_at.is_none() {
        now += BEAT;
        if watch.stale(now) {
            stale_at = Some(now);
        }
    }
    assert_eq!(stale_at, Some(PATIENCE + BEAT));
    // Anything from the leader resets it.
    watch.heard(now);
    assert!(!watch.stale(now + BEAT));
    // Jitter waits up to half as long again.
    let mut patient = Watch::new(0, 1.0);
    let checks: Vec<bool> = (1..=7).map(|n| patient.stale(n * BEAT)).collect();
    assert_eq!(checks, [false, false, false, false, false, false, true]);
}

#[test]
fn a_tab_that_was_not_running_does_not_blame_its_leader() {
    let mut watch = Watch::new(0, 0.0);
    assert!(!watch.stale(BEAT));
    // Asleep for an hour: the first check after waking starts afresh.
    assert!(!watch.stale(3_600_000));
    assert!(!watch.stale(3_600_000 + BEAT));
    // The clock moved back: likewise.
    assert!(!watch.stale(1_000));
    for n in 1..=4 {
        assert!(!watch.stale(1_000 + n * BEAT), "{n}");
    }
    assert!(watch.stale(1_000 + 5 * BEAT));
}

#[test]
fn a_beat_says_the_leaders_state() {
    assert!(Tab::from_leader(&Message::Beat {
        state: ConnectionState::Open
    }));
    assert!(!Tab::from_leader(&Message::Join { names: vec![] }));
    let mut tab = Tab::default();
    // A follower told `Connecting` by a tab that no longer leads is set
    // right by the leader's next beat.
    tab.handle(Message::Leaving, false);
    let beat = Message::Beat {
        state: ConnectionState::Open,
    };
    assert_eq!(
        tab.handle(beat.clone(), false).state,
        Some(ConnectionState::Open)
    );
    assert_eq!(tab.handle(beat, true), Reaction::default());
}
