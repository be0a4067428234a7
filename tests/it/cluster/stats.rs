//! Cluster-wide figures: every instance shows the sum, and an instance
//! that dies drops out within three report intervals.

use std::time::{Duration, Instant};

use super::Cluster;
use crate::support::{User, login_on, signup_on};

/// `total-clients` as the dashboard's server function answers it.
async fn total(user: &User) -> serde_json::Value {
    let (status, json) = user.post_json("/api/sse/stats", "{}").await;
    assert_eq!(status, 200, "{json}");
    json
}

async fn wait_for_total(user: &User, want: u64, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let stats = total(user).await;
        if stats["totalClients"] == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{} shows {stats} after {within:?}, not {want}",
            user.url("")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn totals_are_cluster_wide_and_a_dead_instance_drops_out() {
    // Reports every 500 ms (the cluster's setting): three intervals.
    const THREE_INTERVALS: Duration = Duration::from_millis(1500);
    let cluster = Cluster::new().await;
    let mut a = cluster.start("a").await;
    let b = cluster.start("b").await;
    signup_on(&a.base, "root").await;
    cluster.grant_admin("root");
    let admin = login_on(&b.base, "root").await;
    let carol = signup_on(&a.base, "carol").await;

    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(carol.open("").await.0);
    }
    let on_b = carol.at(&b.base);
    for _ in 0..2 {
        streams.push(on_b.open("").await.0);
    }
    for user in [&carol, &on_b] {
        wait_for_total(user, 5, Duration::from_secs(5)).await;
    }
    // Admins see each instance's share.
    let stats = total(&admin).await;
    let instances = stats["instances"].as_array().expect("instances").clone();
    let share = |name: &str| {
        instances
            .iter()
            .find(|i| i["instance"] == name)
            .map(|i| i["clients"].as_u64())
    };
    assert_eq!(share("a"), Some(Some(3)), "{stats}");
    assert_eq!(share("b"), Some(Some(2)), "{stats}");
    assert!(
        total(&carol)
            .await
            .get("instances")
            .is_none_or(|i| i.as_array().is_some_and(Vec::is_empty)),
        "others see totals only"
    );

    a.kill();
    let took = wait_for_total(&on_b, 2, Duration::from_secs(10)).await;
    assert!(
        took <= THREE_INTERVALS + Duration::from_millis(300),
        "A dropped out after {took:?}"
    );
    drop(streams);
    drop((a, b));
    cluster.finish().await;
}

#[tokio::test]
async fn the_per_user_limit_counts_other_instances_streams() {
    let mut cluster = Cluster::new().await;
    cluster.env.push(("SSE_PER_USER_MAX".into(), "3".into()));
    let a = cluster.start("a").await;
    let b = cluster.start("b").await;
    let carol = signup_on(&a.base, "carol").await;
    let on_b = carol.at(&b.base);
    let mut streams = vec![carol.open("").await.0, carol.open("").await.0];
    // B has heard of A's two once its totals say so.
    wait_for_total(&on_b, 2, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    streams.push(on_b.open("").await.0);
    let refused = on_b.connect("").await;
    assert_eq!(
        refused.status(),
        429,
        "2 on A + 1 on B is carol's limit of 3"
    );
    let body: serde_json::Value = refused.json().await.expect("JSON");
    assert_eq!(body["error"], "too_many_connections", "{body}");
    drop(streams);
    drop((a, b));
    cluster.finish().await;
}
