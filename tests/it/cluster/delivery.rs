//! Sends cross processes: a client on A, the sender on B.

use std::time::Duration;

use super::{Cluster, send};
use crate::support::{SseStream, signup_on};

fn message(data: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(data).expect("JSON data");
    json["message"].as_str().expect("message").to_string()
}

/// The next event named `name` (others skipped), its id and message.
async fn next_named(stream: &mut SseStream, name: &str) -> Option<(String, String)> {
    loop {
        let (id, got, data) = stream.next_with_id(Duration::from_secs(5)).await?;
        if got == name {
            return Some((id, message(&data)));
        }
    }
}

/// Nothing more named `name` within a short wait.
async fn nothing_more(stream: &mut SseStream, name: &str) {
    while let Some((_, got, data)) = stream.next_with_id(Duration::from_millis(400)).await {
        assert_ne!(got, name, "a second copy: {data}");
    }
}

#[tokio::test]
async fn every_target_kind_reaches_a_client_on_another_instance_once() {
    let cluster = Cluster::new().await;
    let a = cluster.start("a").await;
    let b = cluster.start("b").await;
    let bob = signup_on(&a.base, "bob").await;
    signup_on(&b.base, "alice").await;
    cluster.grant_admin("alice");
    let alice = crate::support::login_on(&b.base, "alice").await;

    let (mut home, home_id) = bob.open("?tag=page:home").await;
    let (mut plain, _) = bob.open("").await;

    // To the user: both of bob's streams, once each.
    send(&alice, "bob", "tick", "to-user").await;
    for stream in [&mut home, &mut plain] {
        let (id, text) = next_named(stream, "tick").await.expect("tick on A");
        assert_eq!(text, "to-user");
        assert!(!id.is_empty(), "events from the bus carry ids");
        nothing_more(stream, "tick").await;
    }

    // To one client: only that stream.
    let body = serde_json::json!({
        "user": "bob", "event": "tick", "message": "to-client", "client": home_id,
    });
    let (status, json) = alice.post_json("/api/sse/test", &body.to_string()).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        next_named(&mut home, "tick").await.expect("tick").1,
        "to-client"
    );
    nothing_more(&mut plain, "tick").await;

    // To a tag: only the stream carrying it.
    let (status, json) = alice
        .post_json(
            "/api/sse/broadcast",
            r#"{"event":"tick","message":"to-tag","tag":"page:home"}"#,
        )
        .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        next_named(&mut home, "tick").await.expect("tick").1,
        "to-tag"
    );
    nothing_more(&mut plain, "tick").await;

    // To everyone (a stored broadcast): both, once, with an inbox id.
    let (status, json) = alice
        .post_json("/api/sse/broadcast", r#"{"message":"to-all"}"#)
        .await;
    assert_eq!(status, 200, "{json}");
    for stream in [&mut home, &mut plain] {
        let (id, text) = next_named(stream, "notification").await.expect("broadcast");
        assert_eq!(text, "to-all");
        assert!(id.contains(':'), "a stored event's id names its row: {id}");
        nothing_more(stream, "notification").await;
    }

    // A persistent notification to bob, sent on B, is in his inbox as
    // seen from A (one database) and live on A.
    send(&alice, "bob", "notification", "stored").await;
    let (id, _) = next_named(&mut plain, "notification")
        .await
        .expect("stored");
    let (status, page) = bob.post_json("/api/inbox/list", "{}").await;
    assert_eq!(status, 200, "{page}");
    let row = crate::support::inbox_id(&id);
    assert!(
        page.to_string().contains(&format!("\"id\":{row}")),
        "row {row} in bob's inbox as A shows it: {page}"
    );

    // Sign-out on B ends the session's streams on A.
    let response = bob
        .client
        .post(b.as_user(&bob).url("/api/auth/logout"))
        .send()
        .await
        .expect("logout");
    assert_eq!(response.status(), 200);
    assert!(
        home.ends_within(Duration::from_secs(5)).await,
        "stream on A ended"
    );
    assert!(
        plain.ends_within(Duration::from_secs(5)).await,
        "stream on A ended"
    );

    drop((a, b));
    cluster.finish().await;
}

#[tokio::test]
async fn a_client_of_a_killed_instance_resumes_on_another_without_loss_or_duplicate() {
    const SENDS: usize = 300;
    let cluster = Cluster::new().await;
    let mut a = cluster.start("a").await;
    let b = cluster.start("b").await;
    let bob = signup_on(&a.base, "bob").await;
    let alice = signup_on(&b.base, "alice").await;
    let (mut stream, _) = bob.open("").await;

    // The sender goes on through B, at a steady pace, whatever A does.
    let sender = tokio::spawn(async move {
        for n in 0..SENDS {
            send(&alice, "bob", "seq", &n.to_string()).await;
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    });
    let mut got = Vec::new();
    let mut last_id = String::new();
    while got.len() < SENDS / 3 {
        let (id, text) = next_named(&mut stream, "seq").await.expect("seq on A");
        got.push(text.parse::<usize>().expect("number"));
        last_id = id;
    }
    a.kill();
    // What A had queued but not written is lost with it; the rest of the
    // stream may still be read before the end.
    while let Some((id, name, data)) = stream.next_with_id(Duration::from_secs(2)).await {
        if name == "seq" {
            got.push(message(&data).parse().expect("number"));
            last_id = id;
        }
    }
    let (mut resumed, _) = bob.at(&b.base).resume("", &last_id).await;
    sender.await.expect("sender");
    while got.len() < SENDS {
        match next_named(&mut resumed, "seq").await {
            Some((_, text)) => got.push(text.parse().expect("number")),
            None => break,
        }
    }
    nothing_more(&mut resumed, "seq").await;
    let expected: Vec<usize> = (0..SENDS).collect();
    assert_eq!(got, expected, "exactly the sequence sent, in order, once");

    drop((a, b));
    cluster.finish().await;
}

#[tokio::test]
async fn a_resume_older_than_the_history_is_served_from_the_stream() {
    // The history keeps 2 s of events; the stream keeps them all.
    let mut cluster = Cluster::new().await;
    cluster.env.push(("SSE_HISTORY_AGE".into(), "2s".into()));
    let a = cluster.start("a").await;
    let b = cluster.start("b").await;
    let bob = signup_on(&a.base, "bob").await;
    let alice = signup_on(&b.base, "alice").await;
    let (mut stream, _) = bob.open("").await;
    send(&alice, "bob", "seq", "0").await;
    let (last_id, _) = next_named(&mut stream, "seq").await.expect("seq 0");
    drop(stream);
    for n in 1..=3 {
        // Not for bob: must not be replayed to him.
        send(&alice, "alice", "seq", "not-bob").await;
        // Bob's last one is the newest the history has forgotten: the
        // entry at its floor, read from the stream, once.
        send(&alice, "bob", "seq", &n.to_string()).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    send(&alice, "bob", "seq", "4").await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (mut resumed, _) = bob.resume("", &last_id).await;
    let mut got = Vec::new();
    while let Some((_, name, data)) = resumed.next_with_id(Duration::from_millis(800)).await {
        assert_ne!(name, "sse-reset", "{data}");
        if name == "seq" {
            got.push(message(&data));
        }
    }
    assert_eq!(
        got,
        ["1", "2", "3", "4"],
        "older ones from the stream, then the history's"
    );

    // Without the bus's stream (another history), the same resume is told.
    let (mut other, _) = bob.resume("", "0000000000000001-1-0").await;
    let (_, name, _) = other
        .next_with_id(Duration::from_secs(2))
        .await
        .expect("an event");
    assert_eq!(name, "sse-reset");
    drop((a, b));
    cluster.finish().await;
}
