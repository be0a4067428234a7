//! Redis lost and back, or its stream deleted: local delivery goes on,
//! the processes reconnect by themselves, and the clients that may have
//! missed something are told with `sse-reset`, never left with a gap.

use std::time::{Duration, Instant};

use super::{Cluster, OwnRedis, send};
use crate::support::{SseStream, User, login_on, signup_on};

/// The names of the events read until one named `until` (inclusive),
/// `tick` ones as `tick:<message>`.
async fn read_until(stream: &mut SseStream, until: &str, wait: Duration) -> Vec<String> {
    let deadline = Instant::now() + wait;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some((_, name, data)) = stream.next_with_id(left).await else {
            panic!("no {until:?} within {wait:?}; read {seen:?}");
        };
        let label = if name == "tick" {
            let json: serde_json::Value = serde_json::from_str(&data).expect("JSON");
            format!("tick:{}", json["message"].as_str().unwrap_or_default())
        } else {
            name
        };
        let done = label == until;
        seen.push(label);
        if done {
            return seen;
        }
    }
}

/// Two instances on the Redis at `url`: an admin signed in on A (and the
/// same browser on B), bob signed up on A, alice on B.
struct Two {
    cluster: Cluster,
    a: super::Instance,
    b: super::Instance,
    admin_a: User,
    admin_b: User,
    bob: User,
    alice: User,
}

async fn two_on(url: &str) -> Two {
    let cluster = Cluster::on(url).await;
    let a = cluster.start("a").await;
    let b = cluster.start("b").await;
    signup_on(&a.base, "root").await;
    cluster.grant_admin("root");
    let admin_a = login_on(&a.base, "root").await;
    let admin_b = admin_a.at(&b.base);
    let bob = signup_on(&a.base, "bob").await;
    let alice = signup_on(&b.base, "alice").await;
    Two {
        cluster,
        a,
        b,
        admin_a,
        admin_b,
        bob,
        alice,
    }
}

/// Waits until the instance `admin` talks to says its bus is connected.
async fn bus_connected(admin: &User, within: Duration) {
    let started = Instant::now();
    loop {
        let listing = admin.clients("").await;
        if listing["bus"]["connected"] == true {
            return;
        }
        assert!(
            started.elapsed() < within,
            "bus still down: {}",
            listing["bus"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn redis_restarted_mid_stream_local_delivery_goes_on_and_clients_are_told() {
    let mut redis = OwnRedis::start().await;
    let Two {
        cluster,
        a,
        b,
        admin_a,
        admin_b,
        bob,
        alice,
    } = two_on(&redis.url()).await;
    let (mut stream, _) = bob.open("").await;

    send(&alice, "bob", "tick", "before").await;
    assert_eq!(
        read_until(&mut stream, "tick:before", Duration::from_secs(5)).await,
        ["tick:before"]
    );

    redis.stop();
    // A send on A reaches A's client at once, and answers at once.
    let started = Instant::now();
    send(&alice.at(&a.base), "bob", "tick", "during").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a send waited for Redis"
    );
    let seen = read_until(&mut stream, "tick:during", Duration::from_secs(5)).await;
    assert_eq!(seen, ["sse-reset", "tick:during"], "told, then delivered");

    redis.restart().await;
    bus_connected(&admin_a, Duration::from_secs(20)).await;
    bus_connected(&admin_b, Duration::from_secs(20)).await;
    send(&alice, "bob", "tick", "after").await;
    let seen = read_until(&mut stream, "tick:after", Duration::from_secs(5)).await;
    assert_eq!(
        seen,
        ["sse-reset", "tick:after"],
        "the new history announced before its first event"
    );
    drop((a, b));
    cluster.finish().await;
}

#[tokio::test]
async fn a_deleted_stream_is_a_new_history_and_clients_are_told() {
    let cluster = Cluster::new().await;
    let a = cluster.start("a").await;
    let b = cluster.start("b").await;
    let bob = signup_on(&a.base, "bob").await;
    let alice = signup_on(&b.base, "alice").await;
    let (mut stream, _) = bob.open("").await;
    send(&alice, "bob", "tick", "one").await;
    assert_eq!(
        read_until(&mut stream, "tick:one", Duration::from_secs(5)).await,
        ["tick:one"]
    );

    cluster.delete_stream().await;

    send(&alice, "bob", "tick", "two").await;
    let seen = read_until(&mut stream, "tick:two", Duration::from_secs(8)).await;
    assert_eq!(seen, ["sse-reset", "tick:two"]);
    drop((a, b));
    cluster.finish().await;
}

#[tokio::test]
async fn a_server_starts_without_redis_and_joins_the_bus_when_it_comes() {
    let mut redis = OwnRedis::not_started();
    let cluster = Cluster::on(&redis.url()).await;
    let a = cluster.start("a").await;
    signup_on(&a.base, "root").await;
    cluster.grant_admin("root");
    let admin = login_on(&a.base, "root").await;
    let listing = admin.clients("").await;
    assert_eq!(listing["bus"]["kind"], "redis", "{listing}");
    assert_eq!(
        listing["bus"]["connected"], false,
        "says it is not connected"
    );
    assert!(
        a.log().contains("Redis unreachable"),
        "and logs it:\n{}",
        a.log()
    );

    let bob = signup_on(&a.base, "bob").await;
    let (mut stream, _) = bob.open("").await;
    send(&admin, "bob", "tick", "local").await;
    let seen = read_until(&mut stream, "tick:local", Duration::from_secs(5)).await;
    assert_eq!(seen.last().map(String::as_str), Some("tick:local"));

    redis.restart().await;
    bus_connected(&admin, Duration::from_secs(20)).await;
    send(&admin, "bob", "tick", "shared").await;
    let seen = read_until(&mut stream, "tick:shared", Duration::from_secs(5)).await;
    assert_eq!(seen, ["sse-reset", "tick:shared"]);
    drop(a);
    cluster.finish().await;
}

#[tokio::test]
async fn sends_one_process_made_without_redis_reset_the_others_clients() {
    // Redis keeps its data: when it is back, the stream is the same one,
    // and a process that only lost its connection goes on without a reset.
    let mut redis = OwnRedis::start_persistent().await;
    let Two {
        cluster,
        a,
        b,
        admin_a,
        admin_b,
        bob,
        alice,
    } = two_on(&redis.url()).await;
    let (mut on_a, _) = bob.open("").await;
    let (mut on_b, _) = bob.at(&b.base).open("").await;
    send(&alice, "bob", "tick", "one").await;
    for stream in [&mut on_a, &mut on_b] {
        assert_eq!(
            read_until(stream, "tick:one", Duration::from_secs(5)).await,
            ["tick:one"]
        );
    }

    redis.stop();
    // Reaches A's client only; B's cannot know, until Redis is back.
    send(&alice.at(&a.base), "bob", "tick", "during").await;
    let seen = read_until(&mut on_a, "tick:during", Duration::from_secs(5)).await;
    assert_eq!(seen, ["sse-reset", "tick:during"]);

    redis.restart().await;
    bus_connected(&admin_a, Duration::from_secs(20)).await;
    bus_connected(&admin_b, Duration::from_secs(20)).await;
    send(&alice, "bob", "tick", "after").await;
    let seen = read_until(&mut on_b, "tick:after", Duration::from_secs(5)).await;
    assert_eq!(
        seen,
        ["sse-reset", "tick:after"],
        "B's client is told it may have missed A's sends"
    );
    let seen = read_until(&mut on_a, "tick:after", Duration::from_secs(5)).await;
    assert!(
        seen.first().map(String::as_str) == Some("sse-reset")
            && !seen.contains(&"tick:during".to_string()),
        "A's client: back on the shared history, told so, nothing twice: {seen:?}"
    );
    drop((a, b));
    cluster.finish().await;
}
