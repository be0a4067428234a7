//! The inbox across processes: committed but unpublished rows (a
//! transactional send whose process died before publishing) are published
//! by the relays of every instance at once, each row exactly once (in the
//! order of each relay's claims, not in one order across relays).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sse_notify::sse::{Audience, InboxConfig, Notifier, SseConfig, UserId};

use super::Cluster;
use crate::inbox::user_id;
use crate::support::signup_on;

#[derive(Serialize, Deserialize)]
struct Shipped {
    order: u64,
}

impl sse_notify::sse::SseEvent for Shipped {
    const NAME: &'static str = "order-shipped";
    const PERSISTENT: bool = true;
}

#[tokio::test]
async fn relays_on_every_instance_publish_each_committed_row_once() {
    const ROWS: u64 = 60;
    let mut cluster = Cluster::new().await;
    cluster
        .env
        .push(("INBOX_RELAY_INTERVAL".into(), "50ms".into()));
    let a = cluster.start("a").await;
    let b = cluster.start("b").await;
    let bob = signup_on(&a.base, "bob").await;
    let bob_id = UserId::new(user_id(&bob).await);
    let (mut on_a, _) = bob.open("").await;
    let (mut on_b, _) = bob.at(&b.base).open("").await;

    // Another process commits rows and never publishes them.
    let dir = std::env::temp_dir();
    let db = sse_notify::store::Db::connect(Some(&cluster.db_url), &dir)
        .await
        .expect("the cluster's database");
    let pool = db.pool().clone();
    let writer = Notifier::with_inbox(SseConfig::default(), pool.clone(), InboxConfig::default());
    for order in 0..ROWS {
        let mut tx = pool.begin().await.expect("begin");
        let pending = writer
            .notify_in(&mut tx, Audience::user(bob_id.clone()), &Shipped { order })
            .await
            .expect("stage");
        tx.commit().await.expect("commit");
        // Never published here: as if this process died after the commit.
        drop(pending);
    }
    pool.close().await;

    for stream in [&mut on_a, &mut on_b] {
        let mut orders = Vec::new();
        while let Some((_, name, data)) = stream.next_with_id(Duration::from_secs(3)).await {
            if name == "order-shipped" {
                let json: serde_json::Value = serde_json::from_str(&data).expect("JSON");
                orders.push(json["order"].as_u64().expect("order"));
            }
        }
        // Each relay publishes its claims in order; two relays' claims
        // interleave as they finish.
        orders.sort_unstable();
        let expected: Vec<u64> = (0..ROWS).collect();
        assert_eq!(orders, expected, "every row once");
    }
    drop((a, b));
    cluster.finish().await;
}
