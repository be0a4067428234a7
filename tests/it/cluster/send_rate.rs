//! The per-user send rate holds across the cluster: two processes do not
//! give an account twice the sends.

use super::Cluster;
use crate::support::signup_on;

#[tokio::test]
async fn the_send_rate_is_counted_across_processes() {
    let mut cluster = Cluster::new().await;
    cluster
        .env
        .push(("SERVER_SENDS_PER_USER".into(), "6".into()));
    cluster.env.push(("SERVER_SEND_WINDOW".into(), "1h".into()));
    let a = cluster.start("a").await;
    let b = cluster.start("b").await;
    let sender = signup_on(&a.base, "sendr").await;
    signup_on(&a.base, "target").await;
    let via = [a.as_user(&sender), b.as_user(&sender)];
    let body =
        serde_json::json!({ "user": "target", "event": "tick", "message": "hi" }).to_string();
    let mut statuses = Vec::new();
    // Alternating: each process alone has seen at most 5 of the 10.
    for n in 0..10 {
        let (status, json) = via[n % 2].post_json("/api/sse/test", &body).await;
        if status == 429 {
            assert_eq!(json["error"], "send_rate", "{json}");
        }
        statuses.push(status);
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 200, 200, 429, 429, 429, 429],
        "six sends per account in the cluster, whichever process takes them"
    );
    drop((a, b));
    cluster.finish().await;
}
