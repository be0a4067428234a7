//! Service mode across two processes on one database and one Redis: an
//! idempotent retry that lands on the other process delivers nothing
//! again, a revoked token is refused by both at once, a stream token
//! minted on one opens a stream on the other (the key is shared), and a
//! token's rate is the cluster's.

use std::time::Duration;

use serde_json::json;

use super::{Cluster, user_id};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn an_idempotent_retry_on_the_other_process_delivers_nothing_again() {
    let cluster = Cluster::new().await;
    let a = cluster.start("a").await;
    let b = cluster.start("b").await;
    let ann = signup_on(&a.base, "ann").await;
    let ann_id = user_id(&cluster.db_url, "ann").await;
    let (mut on_a, _) = a.as_user(&ann).open("").await;
    let (mut on_b, _) = b.as_user(&ann).open("").await;
    let secret = cluster.create_token("svc", "publish");
    let body =
        json!({"target": {"user": ann_id}, "event": "once", "idempotencyKey": "pay-1"}).to_string();
    let (status, first) = publish(&a.base, &secret, &body).await;
    assert_eq!(status, 200, "{first}");
    // Retries on both processes at once: all answered from the first.
    let retries: Vec<_> = (0..10)
        .map(|n| {
            let base = if n % 2 == 0 {
                b.base.clone()
            } else {
                a.base.clone()
            };
            let (secret, body) = (secret.clone(), body.clone());
            tokio::spawn(async move { publish(&base, &secret, &body).await })
        })
        .collect();
    for retry in retries {
        let (status, answer) = retry.await.expect("retry");
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["replayed"], true, "{answer}");
    }
    let marker = json!({"target": {"user": ann_id}, "event": "marker"}).to_string();
    assert_eq!(publish(&b.base, &secret, &marker).await.0, 200);
    for stream in [&mut on_a, &mut on_b] {
        assert_eq!(stream.next_event(WAIT).await.expect("once").0, "once");
        assert_eq!(
            stream.next_event(WAIT).await.expect("marker").0,
            "marker",
            "delivered twice"
        );
    }
    drop((a, b));
    cluster.finish().await;
}

#[tokio::test]
async fn a_revoked_token_is_refused_by_every_process_at_once() {
    let cluster = Cluster::new().await;
    let a = cluster.start("a").await;
    let b = cluster.start("b").await;
    let ann = signup_on(&a.base, "ann").await;
    let ann_id = user_id(&cluster.db_url, "ann").await;
    let (mut stream, _) = b.as_user(&ann).open("").await;
    let secret = cluster.create_token("svc", "publish");
    let keep = cluster.create_token("keep", "publish");
    let body = json!({"target": {"user": ann_id}, "event": "e"}).to_string();
    for base in [&a.base, &b.base] {
        assert_eq!(publish(base, &secret, &body).await.0, 200);
    }
    let out = cluster.token(&["revoke", "svc"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for base in [&a.base, &b.base] {
        let (status, json) = publish(base, &secret, &body).await;
        assert_eq!(
            (status, json["error"].as_str()),
            (401, Some("invalid_token")),
            "{base}"
        );
    }
    let marker = json!({"target": {"user": ann_id}, "event": "marker"}).to_string();
    assert_eq!(publish(&a.base, &keep, &marker).await.0, 200);
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(stream.next_event(WAIT).await.expect("event").0);
    }
    assert_eq!(got, ["e", "e", "marker"]);
    // Each use is logged with the token's name, never with its secret.
    for instance in [&a, &b] {
        let log = instance.log();
        assert!(log.contains("token=svc"), "{}: {log}", instance.name);
        assert!(
            !log.contains(&secret) && !log.contains(&keep),
            "a secret in the log"
        );
    }
    drop((a, b));
    cluster.finish().await;
}

#[tokio::test]
async fn a_stream_token_minted_on_one_process_streams_from_the_other() {
    let cluster = Cluster::new().await;
    let a = cluster.start("a").await;
    let b = cluster.start("b").await;
    signup_on(&a.base, "ann").await;
    let ann_id = user_id(&cluster.db_url, "ann").await;
    let minter = cluster.create_token("m", "subscribe");
    let publisher = cluster.create_token("p", "publish");
    let token = mint(&a.base, &minter, &ann_id, &["room:x"], 60).await;
    let (mut stream, _) = open_with_token(&b.base, &token, "?tag=room:x").await;
    let body = json!({"target": {"channel": "room:x"}, "event": "hello"}).to_string();
    assert_eq!(publish(&a.base, &publisher, &body).await.0, 200);
    assert_eq!(stream.next_event(WAIT).await.expect("hello").0, "hello");
    // The stream token came in the query string: it is in no log line.
    for instance in [&a, &b] {
        assert!(
            !instance.log().contains(&token),
            "the stream token in {}'s log",
            instance.name
        );
    }
    drop((a, b));
    cluster.finish().await;
}

#[tokio::test]
async fn a_token_rate_is_counted_across_processes() {
    let cluster = Cluster::new().await;
    let a = cluster.start("a").await;
    let b = cluster.start("b").await;
    signup_on(&a.base, "ann").await;
    let ann_id = user_id(&cluster.db_url, "ann").await;
    let out = cluster.token(&["create", "slow", "--scope", "publish", "--rate", "6"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    let body = json!({"target": {"user": ann_id}, "event": "e"}).to_string();
    let minute = || sse_notify::sse::unix_millis_now() / 60_000;
    // Ten events, alternating: each process alone sees 5, under the rate.
    // Repeated (with a new token) if a minute boundary fell in between.
    let mut secret = secret;
    for attempt in 0..3 {
        let started = minute();
        let mut statuses = Vec::new();
        for n in 0..10 {
            let base = if n % 2 == 0 { &a.base } else { &b.base };
            let (status, json) = publish(base, &secret, &body).await;
            if status == 429 {
                assert_eq!(json["error"], "rate_limited", "{json}");
            }
            statuses.push(status);
        }
        if minute() == started {
            assert_eq!(
                statuses,
                [200, 200, 200, 200, 200, 200, 429, 429, 429, 429],
                "six events per minute in the cluster, whichever process takes them"
            );
            break;
        }
        assert!(attempt < 2, "three minute boundaries in three tries");
        let name = format!("slow{attempt}");
        let out = cluster.token(&["create", &name, "--scope", "publish", "--rate", "6"]);
        secret = String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_string();
    }
    drop((a, b));
    cluster.finish().await;
}
