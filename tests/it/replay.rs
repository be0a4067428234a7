//! Replay after a reconnect (`Last-Event-ID`): exactly what was missed,
//! in order, then live events, with no gap and nothing twice; an explicit
//! `sse-reset` when the history cannot say. Every test counts exactly what
//! arrived.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{SseStream, TestServer, User};

const WAIT: Duration = Duration::from_secs(5);

/// The `message` of a notification event's JSON.
fn message(data: &str) -> String {
    let json: Value = serde_json::from_str(data).expect("event data is JSON");
    json["message"].as_str().expect("message").to_string()
}

async fn send_to(from: &User, to: &str, text: &str) {
    let (status, body) = from
        .post_json(
            "/api/sse/test",
            &json!({ "user": to, "message": text }).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn broadcast(admin: &User, text: &str, tag: Option<&str>) {
    let (status, body) = admin
        .post_json(
            "/api/sse/broadcast",
            &json!({ "message": text, "tag": tag }).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Reads `n` events; returns their messages and the last id.
async fn read(stream: &mut SseStream, n: usize) -> (Vec<String>, String) {
    let mut got = Vec::new();
    let mut last = String::new();
    for _ in 0..n {
        let (id, name, data) = stream
            .next_with_id(WAIT)
            .await
            .unwrap_or_else(|| panic!("event {} of {n} did not come; got {got:?}", got.len()));
        assert_eq!(name, "notification", "{data}");
        got.push(message(&data));
        last = id;
    }
    (got, last)
}

async fn quiet(stream: &mut SseStream) {
    if let Some(extra) = stream.next_with_id(Duration::from_millis(300)).await {
        panic!("nothing more expected, got {extra:?}");
    }
}

#[tokio::test]
async fn a_reconnect_gets_exactly_what_it_missed_in_order_then_live_events() {
    let server = TestServer::start(&[]).await;
    let ann = server.signup("annr").await;
    server.signup("bossr").await;
    server.grant_admin("bossr");
    let boss = server.login("bossr").await;

    let (mut stream, _) = ann.open("?tag=page:home").await;
    for n in 0..10 {
        send_to(&boss, "annr", &format!("before {n}")).await;
    }
    let (got, last) = read(&mut stream, 10).await;
    assert_eq!(got[9], "before 9");
    drop(stream);

    // While away: 100 to ann, 20 broadcasts, 20 to a tag ann does not carry.
    let mut expected = Vec::new();
    for n in 0..140 {
        match n % 7 {
            3 => {
                broadcast(&boss, &format!("all {n}"), None).await;
                expected.push(format!("all {n}"));
            }
            5 => broadcast(&boss, &format!("settings {n}"), Some("page:settings")).await,
            _ => {
                send_to(&boss, "annr", &format!("away {n}")).await;
                expected.push(format!("away {n}"));
            }
        }
    }
    assert_eq!(expected.len(), 120, "100 to ann and 20 broadcasts");

    let (mut stream, _) = ann.resume("?tag=page:home", &last).await;
    let (got, _) = read(&mut stream, 120).await;
    assert_eq!(got, expected);
    quiet(&mut stream).await;
    send_to(&boss, "annr", "live").await;
    let (got, _) = read(&mut stream, 1).await;
    assert_eq!(got, ["live"]);
    quiet(&mut stream).await;
}

#[tokio::test]
async fn switching_from_replay_to_live_under_load_loses_and_repeats_nothing() {
    let server = TestServer::start(&[]).await;
    let ann = server.signup("annl").await;
    let sender = server.signup("senderl").await;
    const TOTAL: usize = 2_000;

    let (mut stream, _) = ann.open("").await;
    let publisher = tokio::spawn(async move {
        for n in 1..=TOTAL {
            send_to(&sender, "annl", &n.to_string()).await;
        }
    });

    // Reconnect 30 times after a pseudo-random number of events each.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut received: Vec<usize> = Vec::with_capacity(TOTAL);
    let mut last = String::new();
    let mut reconnects = 0;
    while received.len() < TOTAL {
        let take = if reconnects < 30 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (1 + seed % 50) as usize
        } else {
            TOTAL - received.len()
        };
        let take = take.min(TOTAL - received.len());
        for _ in 0..take {
            let (id, _, data) = stream
                .next_with_id(WAIT)
                .await
                .unwrap_or_else(|| panic!("stalled after {} events", received.len()));
            received.push(message(&data).parse().expect("a number"));
            last = id;
        }
        if reconnects < 30 && received.len() < TOTAL {
            drop(stream);
            reconnects += 1;
            stream = ann.resume("", &last).await.0;
        }
    }
    publisher.await.expect("publisher");
    assert_eq!(reconnects, 30);
    let expected: Vec<usize> = (1..=TOTAL).collect();
    assert_eq!(received, expected, "every event once, in order");
    quiet(&mut stream).await;
}

/// The `sse-reset` event that must come first, and its JSON.
async fn expect_reset(stream: &mut SseStream, reason: &str) -> Value {
    let (id, name, data) = stream.next_with_id(WAIT).await.expect("sse-reset");
    assert_eq!(name, "sse-reset", "{data}");
    let json: Value = serde_json::from_str(&data).expect("JSON");
    assert_eq!(json["reason"], reason, "{json}");
    assert_eq!(
        json["since"],
        id.as_str(),
        "the reset carries its position as its id"
    );
    // Having lost its place, the stream starts over with the inbox.
    stream.take_backlog().await;
    json
}

#[tokio::test]
async fn ids_that_cannot_be_resumed_get_an_explicit_reset_then_live_events() {
    let server = TestServer::start(&[("SSE_HISTORY_LEN", "5")]).await;
    let ann = server.signup("annx").await;
    let bob = server.signup("bobx").await;

    // Garbage, and the old numeric ids of earlier versions.
    for garbage in ["nonsense", "1733150000000123", "ffffffffffffffff-x-0"] {
        let (mut stream, _) = ann.resume("", garbage).await;
        expect_reset(&mut stream, "unparsable_id").await;
        send_to(&bob, "annx", "after garbage").await;
        assert_eq!(read(&mut stream, 1).await.0, ["after garbage"]);
    }

    // Older than the history holds (5 events).
    let (mut stream, _) = ann.open("").await;
    send_to(&bob, "annx", "first").await;
    let (_, first_id) = read(&mut stream, 1).await;
    drop(stream);
    for n in 0..10 {
        send_to(&bob, "annx", &format!("gone {n}")).await;
    }
    let (mut stream, _) = ann.resume("", &first_id).await;
    expect_reset(&mut stream, "too_old").await;
    quiet(&mut stream).await;
    send_to(&bob, "annx", "live").await;
    assert_eq!(read(&mut stream, 1).await.0, ["live"]);
    drop(stream);

    // From before a restart: another history.
    server.shutdown().await.expect("clean shutdown");
    let server = TestServer::start(&[]).await;
    let ann = server.signup("annx").await;
    let (mut stream, _) = ann.resume("", &first_id).await;
    let reset = expect_reset(&mut stream, "other_epoch").await;
    let since = reset["since"].as_str().expect("since").to_string();
    drop(stream);
    // The reset's id is a valid place to resume from.
    let (mut stream, _) = ann.resume("", &since).await;
    quiet(&mut stream).await;
}

#[tokio::test]
async fn the_query_parameter_resumes_like_the_header() {
    let server = TestServer::start(&[]).await;
    let ann = server.signup("annq").await;
    let bob = server.signup("bobq").await;
    let (mut stream, _) = ann.open("").await;
    send_to(&bob, "annq", "one").await;
    let (_, last) = read(&mut stream, 1).await;
    drop(stream);
    send_to(&bob, "annq", "two").await;
    let (mut stream, _) = ann
        .open(&format!("?lastEventId={}", urlencode(&last)))
        .await;
    assert_eq!(read(&mut stream, 1).await.0, ["two"]);
    quiet(&mut stream).await;
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn a_connect_with_no_event_yet_still_resumes_from_its_start() {
    let server = TestServer::start(&[]).await;
    let ann = server.signup("anns").await;
    let bob = server.signup("bobs").await;
    // The `connected` event carries an id: a browser that loses its
    // stream before any event arrived resumes from there.
    let response = ann.connect("").await;
    let mut stream = SseStream::new(response);
    let (start, name, _) = stream.next_with_id(WAIT).await.expect("connected");
    assert_eq!(name, "connected");
    assert!(!start.is_empty(), "connected carries an id");
    drop(stream);
    for n in 0..3 {
        send_to(&bob, "anns", &format!("missed {n}")).await;
    }
    let (mut stream, _) = ann.resume("", &start).await;
    assert_eq!(
        read(&mut stream, 3).await.0,
        ["missed 0", "missed 1", "missed 2"]
    );
    quiet(&mut stream).await;
}

/// Opens a stream; returns it and the id its `connected` event carries.
async fn open_with_start(user: &User, query: &str) -> (SseStream, String) {
    let mut stream = SseStream::new(user.connect(query).await);
    let (start, name, _) = stream.next_with_id(WAIT).await.expect("connected");
    assert_eq!(name, "connected");
    stream.take_backlog().await;
    (stream, start)
}

#[tokio::test]
async fn a_client_cut_off_for_overflow_reconnects_and_ends_with_every_event() {
    // A queue of 4 and a reader that pauses: it is cut off.
    let server = TestServer::start(&[("SSE_QUEUE_LEN", "4")]).await;
    let ann = server.signup("anno").await;
    let bob = server.signup("bobo").await;
    // ~8 MB: more than the sockets' buffers take (the server's send buffer
    // grows to 4 MB here, the client's stack holds a few hundred KB).
    const TOTAL: usize = 4_000;
    let pad = "x".repeat(1_900);

    let (mut stream, mut last) = open_with_start(&ann, "").await;
    for n in 0..TOTAL {
        send_to(&bob, "anno", &format!("{n} {pad}")).await;
    }
    // The server must have ended the stream.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let listing = ann.clients("").await;
        if listing["clients"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the paused reader was not cut off: {listing}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What reached the client before the cut, then the rest by replay.
    let mut received = Vec::new();
    while let Some((id, _, data)) = stream.next_with_id(Duration::from_millis(500)).await {
        received.push(message(&data));
        last = id;
    }
    let before_cut = received.len();
    assert!(before_cut < TOTAL, "the cut lost the queue's tail");
    let (mut stream, _) = ann.resume("", &last).await;
    let (rest, _) = read(&mut stream, TOTAL - before_cut).await;
    received.extend(rest);
    quiet(&mut stream).await;
    let numbers: Vec<usize> = received
        .iter()
        .map(|m| m.split(' ').next().unwrap_or("").parse().expect("number"))
        .collect();
    assert_eq!(numbers, (0..TOTAL).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_replay_never_carries_another_users_events() {
    let server = TestServer::start(&[]).await;
    server.signup("bossm").await;
    server.grant_admin("bossm");
    let boss = server.login("bossm").await;
    let ann = server.signup("annm").await;
    let bob = server.signup("bobm").await;
    let pages = ["page:a", "page:b", "page:c"];

    // 3 tabs each; every tab gets one event to learn an id, then all drop.
    let mut tabs = Vec::new();
    for user in [&ann, &bob] {
        for page in pages {
            tabs.push((user, page, user.open(&format!("?tag={page}")).await.0));
        }
    }
    broadcast(&boss, "hello", None).await;
    let mut resume = Vec::new();
    for (user, page, mut stream) in tabs {
        let (got, last) = read(&mut stream, 1).await;
        assert_eq!(got, ["hello"]);
        resume.push((user, page, last));
    }

    // While away: targeted, tagged and broadcast, interleaved.
    send_to(&boss, "annm", "to ann").await;
    send_to(&boss, "bobm", "to bob").await;
    broadcast(&boss, "to page a", Some("page:a")).await;
    broadcast(&boss, "to all", None).await;
    send_to(&boss, "annm", "to ann again").await;
    broadcast(&boss, "to page c", Some("page:c")).await;

    for (user, page, last) in resume {
        let mut expected: Vec<&str> = Vec::new();
        let is_ann = user.name == "annm";
        if is_ann {
            expected.push("to ann");
        } else {
            expected.push("to bob");
        }
        if page == "page:a" {
            expected.push("to page a");
        }
        expected.push("to all");
        if is_ann {
            expected.push("to ann again");
        }
        if page == "page:c" {
            expected.push("to page c");
        }
        let (mut stream, _) = user.resume(&format!("?tag={page}"), &last).await;
        let (got, _) = read(&mut stream, expected.len()).await;
        assert_eq!(got, expected, "{} on {page}", user.name);
        quiet(&mut stream).await;
    }
}

#[tokio::test]
async fn a_reconnect_from_the_same_session_takes_its_client_id_back() {
    let server = TestServer::start(&[]).await;
    let ann = server.signup("annc").await;
    let bob = server.signup("bobc").await;
    // Signed in before the events: a resume never reaches back before its
    // own sign-in.
    let other_session = server.login("annc").await;
    let to_client = |client: &str, text: &str| {
        json!({ "user": "annc", "client": client, "message": text }).to_string()
    };

    let (mut stream, start) = open_with_start(&ann, "").await;
    let client = ann.clients("").await["clients"][0]["id"]
        .as_str()
        .expect("client id")
        .to_string();
    drop(stream);
    // Sent to that connection while it is away (whether or not the server
    // noticed yet), then to the user.
    let (status, body) = bob
        .post_json("/api/sse/test", &to_client(&client, "to the tab"))
        .await;
    assert_eq!(status, 200, "{body}");
    send_to(&bob, "annc", "to ann").await;

    // Back with its client id: both, and the same id again.
    let (resumed, id) = ann.resume(&format!("?client={client}"), &start).await;
    stream = resumed;
    assert_eq!(id, client, "the reconnect has its client id back");
    assert_eq!(read(&mut stream, 2).await.0, ["to the tab", "to ann"]);
    quiet(&mut stream).await;

    // The same id from another session gets a new id and nothing sent to
    // the old one.
    drop(stream);
    let (status, _) = bob
        .post_json("/api/sse/test", &to_client(&client, "private"))
        .await;
    assert_eq!(status, 200);
    let (mut stream, other_id) = other_session
        .resume(&format!("?client={client}"), &start)
        .await;
    assert_ne!(other_id, client);
    let (got, _) = read(&mut stream, 1).await;
    assert_eq!(
        got,
        ["to ann"],
        "only what any connection of ann's would get"
    );
    quiet(&mut stream).await;

    // A malformed client id is a clear error.
    let response = ann
        .connect(&format!("?client=nope&lastEventId={start}"))
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"], "bad_client_id");
}
