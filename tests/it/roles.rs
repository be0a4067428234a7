//! `sse_notify admin grant|revoke` (another
//! process) reaches open streams within a second. A stream's `role:` tag
//! is fixed when it opens; a change ends the streams with the old tag,
//! and the reconnect (resuming from `Last-Event-ID`, as a browser does)
//! carries the new one, replay included. Two processes: `cluster::roles`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{SseStream, TestServer, User};

/// How soon a change must reach an open stream.
pub const WITHIN: Duration = Duration::from_secs(1);

const WAIT: Duration = Duration::from_secs(5);

/// A live `notification` to everyone, or to the streams carrying `tag`.
pub async fn broadcast(admin: &User, text: &str, tag: Option<&str>) {
    let (status, body) = admin
        .post_json(
            "/api/sse/broadcast",
            &json!({ "message": text, "tag": tag }).to_string(),
        )
        .await;
    assert_eq!(status, 200, "broadcast {text}: {body}");
}

/// The next event's message and id.
pub async fn next_message(stream: &mut SseStream) -> (String, String) {
    let (id, name, data) = stream
        .next_with_id(WAIT)
        .await
        .expect("an event within 5 s");
    assert_eq!(name, "notification", "{data}");
    let json: Value = serde_json::from_str(&data).expect("event data is JSON");
    let message = json["message"].as_str().expect("message").to_string();
    (message, id)
}

/// Asserts that `stream` ends within [`WITHIN`] of `since`.
pub async fn ends_soon(stream: &mut SseStream, since: Instant, what: &str) {
    let left = WITHIN.saturating_sub(since.elapsed());
    assert!(
        stream.ends_within(left).await,
        "the open stream did not end within {WITHIN:?} of `{what}`"
    );
}

#[tokio::test]
async fn a_revoke_ends_the_admin_stream_and_its_reconnect_gets_no_admin_events() {
    let server = TestServer::start(&[]).await;
    server.signup("rolesboss").await;
    server.grant_admin("rolesboss");
    let boss = server.login("rolesboss").await;
    server.signup("rolesann").await;
    server.grant_admin("rolesann");
    let ann = server.login("rolesann").await;

    let (mut stream, _) = ann.open("").await;
    broadcast(&boss, "admins: one", Some("role:admin")).await;
    let (message, last_id) = next_message(&mut stream).await;
    assert_eq!(message, "admins: one");

    let out = server.admin(&["revoke", "rolesann"]);
    assert!(out.status.success(), "{:?}", out);
    ends_soon(&mut stream, Instant::now(), "admin revoke").await;

    // Sent while the browser waits to reconnect: not replayed to it.
    broadcast(&boss, "admins: missed", Some("role:admin")).await;
    let (mut resumed, id) = ann.resume("", &last_id).await;
    let listing = ann.clients(&format!("?clientIds={id}")).await;
    assert_eq!(listing["clients"][0]["tags"], json!(["role:user"]));
    broadcast(&boss, "admins: later", Some("role:admin")).await;
    broadcast(&boss, "everyone", None).await;
    let (message, _) = next_message(&mut resumed).await;
    assert_eq!(
        message, "everyone",
        "no admin event reaches a revoked admin"
    );

    server.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn a_grant_ends_the_user_stream_and_its_reconnect_gets_admin_events() {
    let server = TestServer::start(&[]).await;
    server.signup("grantboss").await;
    server.grant_admin("grantboss");
    let boss = server.login("grantboss").await;
    let bob = server.signup("grantbob").await;

    let (mut stream, _) = bob.open("").await;
    broadcast(&boss, "hello", None).await;
    let (message, last_id) = next_message(&mut stream).await;
    assert_eq!(message, "hello");

    let out = server.admin(&["grant", "grantbob"]);
    assert!(out.status.success(), "{:?}", out);
    ends_soon(&mut stream, Instant::now(), "admin grant").await;

    broadcast(&boss, "admins: while away", Some("role:admin")).await;
    let (mut resumed, _) = bob.resume("", &last_id).await;
    assert_eq!(next_message(&mut resumed).await.0, "admins: while away");
    broadcast(&boss, "admins: live", Some("role:admin")).await;
    assert_eq!(next_message(&mut resumed).await.0, "admins: live");

    server.shutdown().await.expect("clean stop");
}

/// Only streams with the old tag end: a second revoke (nothing changes)
/// and the user's other, already right, streams are left alone.
#[tokio::test]
async fn streams_already_carrying_the_new_role_stay_open() {
    let server = TestServer::start(&[]).await;
    server.signup("keepboss").await;
    server.grant_admin("keepboss");
    let boss = server.login("keepboss").await;
    let carl = server.signup("keepcarl").await;

    let (mut stream, _) = carl.open("").await;
    let out = server.admin(&["revoke", "keepcarl"]);
    assert!(out.status.success(), "{:?}", out);
    tokio::time::sleep(WITHIN * 2).await;
    broadcast(&boss, "still open", None).await;
    assert_eq!(next_message(&mut stream).await.0, "still open");

    server.shutdown().await.expect("clean stop");
}
