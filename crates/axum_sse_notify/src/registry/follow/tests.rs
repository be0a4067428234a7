//! Registry tests for the shared history: positions from the bus, replay
//! from the mirror, leaving and changing histories, forgotten gaps.

use std::sync::Arc;

use crate::event_id::{Epoch, EventId, Position};
use crate::registry::tests::{config, event, identity};
use crate::registry::{Next, Peer, Registration, Registry, Resume};
use crate::target::{Identity, Target};

/// Everything the stream would write now (opening, replay, queue), as
/// text.
fn written(reg: &mut Registration) -> String {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut out = String::new();
    while let std::task::Poll::Ready(Next::Write(bytes)) = reg.poll_batch(&mut cx, 1 << 16) {
        out.push_str(std::str::from_utf8(&bytes).unwrap());
    }
    out
}

/// What a stream resuming after `id` writes first.
fn resumed(registry: &Arc<Registry>, who: &Identity, id: &str) -> String {
    let resume = Resume::After {
        last_event_id: id,
        client: None,
    };
    let mut registration = registry
        .register_from(who, vec![], Peer::default(), resume)
        .unwrap();
    written(&mut registration)
}

fn shared_id(epoch: u64, ms: u64, seq: u64) -> EventId {
    EventId {
        epoch: Epoch::from_u64(epoch),
        position: Position::new(ms, seq),
    }
}

#[test]
fn events_from_the_bus_keep_their_stream_positions_and_replay_from_the_mirror() {
    let registry = Arc::new(Registry::new(config()));
    registry.restart_history(0, shared_id(9, 1000, 0), Vec::new());
    let ann = identity("ann", "s1", &[]);
    let mut live = registry.register(&ann, vec![]).unwrap();
    for (n, seq) in [(1, 1), (2, 2), (3, 0)] {
        let ms = if seq == 0 { 1001 } else { 1000 };
        registry.deliver(0, shared_id(9, ms, seq), &Target::all(), &event(n), None);
    }
    // An entry read twice (a catch-up overlapping the live read) is not
    // delivered again.
    assert_eq!(
        registry.deliver(0, shared_id(9, 1000, 2), &Target::all(), &event(2), None),
        0
    );
    let frames = written(&mut live);
    assert!(
        frames.starts_with("id: 0000000000000009-1000-1\n"),
        "{frames}"
    );
    assert_eq!(frames.matches("event: test").count(), 3, "{frames}");
    // A client that saw the first resumes after it, from the mirror.
    let text = resumed(&registry, &ann, "0000000000000009-1000-1");
    assert!(!text.contains("sse-reset"), "{text}");
    assert_eq!(text.matches("event: test").count(), 2, "{text}");
    assert!(text.contains("id: 0000000000000009-1001-0\n"), "{text}");
}

#[test]
fn leaving_and_changing_the_shared_history_is_told_to_every_client() {
    let registry = Arc::new(Registry::new(config()));
    registry.restart_history(0, shared_id(9, 1000, 0), Vec::new());
    let ann = identity("ann", "s1", &[]);
    let mut live = registry.register(&ann, vec![]).unwrap();
    registry.deliver(0, shared_id(9, 1000, 1), &Target::all(), &event(1), None);
    assert!(written(&mut live).contains("9-1000-1"));

    // The bus is unreachable: a local send starts a history of its own.
    registry.send(&Target::all(), &event(2)).unwrap();
    let text = written(&mut live);
    let reset = text.find("event: sse-reset").expect("told first");
    let sent = text.find(r#"data: {"n":2}"#).expect("then the event");
    assert!(reset < sent, "{text}");
    assert!(text.contains("history_lost"), "{text}");
    let (head, following) = registry.history_head(0);
    assert!(!following && head.epoch != Epoch::from_u64(9));

    // Following the stream again (a new epoch, say): told again, and an
    // id of the old history resumes with a reset, not a silent gap.
    registry.restart_history(0, shared_id(10, 2000, 0), Vec::new());
    assert!(written(&mut live).contains("event: sse-reset"));
    let text = resumed(&registry, &ann, "0000000000000009-1000-1");
    assert!(text.contains("event: sse-reset"), "{text}");
    assert!(text.contains("other_epoch"), "{text}");

    // A gap that clients were already told about: forgotten for resumes
    // from before it, without another reset for those connected.
    registry.deliver(0, shared_id(10, 2000, 5), &Target::all(), &event(3), None);
    written(&mut live);
    registry.forget_before(0, shared_id(10, 2000, 6));
    assert_eq!(written(&mut live), "");
    assert!(resumed(&registry, &ann, "000000000000000a-2000-5").contains("too_old"));
}
