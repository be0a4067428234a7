//! Presence in one process: the query (who is on a channel, whether a
//! user is online) and who may ask; `sse-presence` join/leave events to
//! the streams that asked, once each, with a reload inside the debounce
//! announcing nothing.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

async fn presence_of(user: &User, query: &str) -> (u16, serde_json::Value) {
    let response = user
        .client
        .get(user.url(&format!("/api/presence?{query}")))
        .send()
        .await
        .expect("GET /api/presence");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

fn names(json: &serde_json::Value) -> Vec<String> {
    json["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["name"].as_str().expect("name").to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The next `sse-presence` event's (action, name), on room:blue only.
async fn next_change(stream: &mut SseStream, wait: Duration) -> Option<(String, String)> {
    let (action, name, channel) = next_presence(stream, wait).await?;
    assert_eq!(channel, "room:blue");
    Some((action, name))
}

#[tokio::test]
async fn presence_is_queried_announced_once_and_debounced() {
    let server = TestServer::start(&[
        ("SSE_PRESENCE_INTERVAL", "200ms"),
        ("SSE_PRESENCE_DEBOUNCE", "800ms"),
    ])
    .await;
    let ann = server.signup("ann").await;
    let bob = server.signup("bob").await;
    let carol = server.signup("carol").await;
    for user in [&ann, &carol] {
        let (status, _) = user
            .post_json("/api/rooms/join", r#"{"room":"blue"}"#)
            .await;
        assert_eq!(status, 200);
    }
    let (status, json) = refused(carol.connect("?tag=room:blue&presence=maybe").await).await;
    assert_eq!((status, json["error"].as_str()), (400, Some("bad_query")));
    let (mut watcher, _) = carol.open("?tag=room:blue&presence=true").await;
    let (_bob_home, _) = bob.open("?tag=page:home").await;
    // The watcher's own arrival is news too.
    let change = next_change(&mut watcher, Duration::from_secs(3)).await;
    assert_eq!(change, Some(("join".into(), "carol".into())));
    let (status, json) = presence_of(&carol, "channel=room:blue").await;
    assert_eq!((status, names(&json)), (200, vec!["carol".to_string()]));

    // Ann comes: one join.
    let (ann_stream, _) = ann.open("?tag=room:blue").await;
    let change = next_change(&mut watcher, Duration::from_secs(3)).await;
    assert_eq!(change, Some(("join".into(), "ann".into())));
    let (_, json) = presence_of(&carol, "channel=room:blue").await;
    assert_eq!(names(&json), ["ann", "carol"]);
    // A reload inside the debounce: nothing announced.
    drop(ann_stream);
    let (ann_stream, _) = ann.open("?tag=room:blue").await;
    assert_eq!(
        next_change(&mut watcher, Duration::from_millis(1500)).await,
        None
    );
    // Gone for good: one leave.
    drop(ann_stream);
    let change = next_change(&mut watcher, Duration::from_secs(3)).await;
    assert_eq!(change, Some(("leave".into(), "ann".into())));
    assert_eq!(
        next_change(&mut watcher, Duration::from_millis(800)).await,
        None
    );
    let (_, json) = presence_of(&carol, "channel=room:blue").await;
    assert_eq!(names(&json), ["carol"]);

    // Users: one's own, or with a service token.
    let (ann_id, bob_id) = (server.user_id("ann").await, server.user_id("bob").await);
    let (status, json) = presence_of(&bob, &format!("user={bob_id}")).await;
    assert_eq!(
        (status, &json["online"], &json["connections"]),
        (200, &json!(true), &json!(1))
    );
    let (status, json) = presence_of(&bob, &format!("user={ann_id}")).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (403, Some("presence_forbidden"))
    );
    let watcher_token = server.create_token("dash", "presence", None);
    let publisher = server.create_token("pub", "publish", None);
    let ask = |secret: String, query: String| {
        let url = server.url(&format!("/api/presence?{query}"));
        async move {
            let response = reqwest::Client::new()
                .get(url)
                .header("authorization", format!("Bearer {secret}"))
                .send()
                .await
                .expect("GET");
            let status = response.status().as_u16();
            (
                status,
                response.json::<serde_json::Value>().await.expect("JSON"),
            )
        }
    };
    let (status, json) = ask(watcher_token.clone(), format!("user={ann_id}")).await;
    assert_eq!((status, &json["online"]), (200, &json!(false)));
    let (status, json) = ask(watcher_token, "channel=room:blue".into()).await;
    assert_eq!((status, names(&json)), (200, vec!["carol".to_string()]));
    let (status, json) = ask(publisher, "channel=room:blue".into()).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (403, Some("insufficient_scope"))
    );
    // Channels: those one may join; never a reserved key; not signed out.
    for (query, status, code) in [
        ("channel=room:red", 403, "presence_forbidden"),
        ("channel=role:admin", 403, "presence_forbidden"),
        ("channel=nocolon", 400, "bad_tag"),
        ("", 400, "bad_query"),
    ] {
        let (got, json) = presence_of(&bob, query).await;
        assert_eq!(
            (got, json["error"].as_str()),
            (status, Some(code)),
            "{query}"
        );
    }
    let response = reqwest::get(server.url("/api/presence?channel=page:home"))
        .await
        .expect("GET");
    assert_eq!(response.status(), 401);
    // Bob's page was never news on room:blue.
    assert_eq!(
        next_change(&mut watcher, Duration::from_millis(300)).await,
        None
    );
    server.shutdown().await.expect("clean shutdown");
}
