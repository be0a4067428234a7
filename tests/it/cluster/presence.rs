//! Presence across two processes: a member on one is seen (query and
//! join event) from the other, and the members of a process killed with
//! SIGKILL leave within three intervals plus the debounce plus one
//! interval (here 0.75 + 0.5 + 0.25 s; asserted within 5 s).

use std::time::{Duration, Instant};

use super::Cluster;
use crate::support::*;

async fn change(stream: &mut SseStream, wait: Duration) -> Option<(String, String)> {
    let (action, name, channel) = next_presence(stream, wait).await?;
    assert_eq!(channel, "room:x");
    Some((action, name))
}

async fn members(user: &User) -> Vec<String> {
    let json: serde_json::Value = user
        .client
        .get(user.url("/api/presence?channel=room:x"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    json["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["name"].as_str().expect("name").to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[tokio::test]
async fn members_are_seen_across_processes_and_leave_when_their_process_is_killed() {
    let mut cluster = Cluster::new().await;
    cluster
        .env
        .push(("SSE_PRESENCE_INTERVAL".into(), "250ms".into()));
    cluster
        .env
        .push(("SSE_PRESENCE_DEBOUNCE".into(), "500ms".into()));
    let a = cluster.start("a").await;
    let mut b = cluster.start("b").await;
    let carol = signup_on(&a.base, "carol").await;
    let ann = signup_on(&a.base, "ann").await;
    for user in [&carol, &ann] {
        let (status, _) = user.post_json("/api/rooms/join", r#"{"room":"x"}"#).await;
        assert_eq!(status, 200);
    }
    let (mut watcher, _) = a.as_user(&carol).open("?tag=room:x&presence=true").await;
    assert_eq!(
        change(&mut watcher, Duration::from_secs(5)).await,
        Some(("join".into(), "carol".into())),
        "the watcher's own arrival"
    );
    let (_ann_on_b, _) = b.as_user(&ann).open("?tag=room:x").await;
    assert_eq!(
        change(&mut watcher, Duration::from_secs(5)).await,
        Some(("join".into(), "ann".into())),
        "a member on b is announced on a"
    );
    assert_eq!(members(&a.as_user(&carol)).await, ["ann", "carol"]);
    assert_eq!(members(&b.as_user(&ann)).await, ["ann", "carol"]);
    // A user's streams are counted in every process: ann's two on b,
    // asked on a with a service token.
    let (_ann_again, _) = b.as_user(&ann).open("").await;
    let dash = cluster.create_token("dash", "presence");
    let ann_id = sse_notify::store::Db::connect(Some(&cluster.db_url), &std::env::temp_dir())
        .await
        .expect("db")
        .user_by_username("ann")
        .await
        .expect("query")
        .expect("ann")
        .id;
    let user_on_a = || async {
        reqwest::Client::new()
            .get(format!("{}/api/presence?user={ann_id}", a.base))
            .header("authorization", format!("Bearer {dash}"))
            .send()
            .await
            .expect("GET")
            .json::<serde_json::Value>()
            .await
            .expect("JSON")
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    while user_on_a().await["connections"] != 2 {
        assert!(Instant::now() < deadline, "{}", user_on_a().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    b.kill();
    let killed = Instant::now();
    assert_eq!(
        change(&mut watcher, Duration::from_secs(5)).await,
        Some(("leave".into(), "ann".into())),
        "the killed process's member leaves"
    );
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(members(&a.as_user(&carol)).await, ["carol"]);
    assert_eq!(user_on_a().await["online"], false);
    assert_eq!(
        change(&mut watcher, Duration::from_millis(800)).await,
        None,
        "one leave only"
    );
    eprintln!("member of a SIGKILLed process left after {took:?}");
    drop((a, b));
    cluster.finish().await;
}
