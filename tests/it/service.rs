//! Service mode over real HTTP: the publish API with service tokens
//! (refusals, validation, batches, idempotency, rates), streams opened
//! with stream tokens (expiry, resume, isolation), the channel matrix
//! (token claims vs the demo's policy), CORS, and the token CLI.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

const WAIT: Duration = Duration::from_secs(5);

/// Publishes a `marker` event to `user` and asserts it is the next event
/// `stream` receives: whatever was refused before it delivered nothing.
async fn nothing_before_marker(
    server: &TestServer,
    secret: &str,
    user: &str,
    stream: &mut SseStream,
) {
    let body = json!({"target": {"user": user}, "event": "marker", "data": {"m": 1}});
    let (status, answer) = publish(&server.base, secret, &body.to_string()).await;
    assert_eq!(status, 200, "{answer}");
    let (name, _) = stream.next_event(WAIT).await.expect("the marker");
    assert_eq!(name, "marker", "an event arrived before the marker");
}

fn assert_refusal(status: u16, json: &serde_json::Value, want_status: u16, code: &str) {
    assert_eq!(status, want_status, "{json}");
    assert_eq!(json["error"], code, "{json}");
    assert!(
        json["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{json}"
    );
}

#[tokio::test]
async fn bad_expired_revoked_and_wrong_scope_service_tokens_deliver_nothing() {
    let server = TestServer::start(&[]).await;
    let ann = server.signup("ann").await;
    let ann_id = server.user_id("ann").await;
    let (mut stream, _) = ann.open("").await;
    let publisher = server.create_token("billing", "publish", None);
    let minter = server.create_token("mobile-api", "subscribe", None);
    let revoked = server.create_token("old-cron", "publish", None);
    let out = server.token(&["revoke", "old-cron"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stream_token = mint(&server.base, &minter, &ann_id, &[], 60).await;

    let body = json!({"target": {"user": ann_id}, "event": "leak", "data": {}}).to_string();
    for (secret, status, code) in [
        ("", 401, "missing_token"),
        (
            "sst_made-up-secret-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            401,
            "invalid_token",
        ),
        ("garbage", 401, "invalid_token"),
        (revoked.as_str(), 401, "invalid_token"),
        (stream_token.as_str(), 401, "invalid_token"),
        (minter.as_str(), 403, "insufficient_scope"),
    ] {
        let (got, json) = publish(&server.base, secret, &body).await;
        assert_refusal(got, &json, status, code);
    }
    // Another scheme than Bearer.
    let response = reqwest::Client::new()
        .post(server.url("/api/publish"))
        .header("authorization", format!("Basic {publisher}"))
        .body(body.clone())
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 401);
    // Minting needs `subscribe`.
    let (got, json, _) = post_with_token(
        &server.base,
        "/api/tokens/stream",
        &publisher,
        &json!({"user": ann_id}).to_string(),
    )
    .await;
    assert_refusal(got, &json, 403, "insufficient_scope");
    nothing_before_marker(&server, &publisher, &ann_id, &mut stream).await;

    // The list shows names and states, never a secret.
    let out = server.token(&["list"]);
    let listed = String::from_utf8(out.stdout).expect("utf-8");
    assert!(listed.contains("billing\tpublish\t60000\t"), "{listed}");
    assert!(
        listed.contains("old-cron") && listed.contains("revoked"),
        "{listed}"
    );
    assert!(!listed.contains("sst_"), "{listed}");
    // Names are unique among live tokens; a revoked name can be reused.
    assert!(
        !server
            .token(&["create", "billing", "--scope", "publish"])
            .status
            .success()
    );
    assert!(!server.token(&["revoke", "nobody"]).status.success());
    let renewed = server.create_token("old-cron", "publish", None);
    assert_ne!(renewed, revoked);
    let (got, _) = publish(&server.base, &revoked, &body).await;
    assert_eq!(got, 401, "the revoked secret stays dead");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn publications_are_checked_like_the_rust_api_and_a_bad_batch_sends_nothing() {
    let server =
        TestServer::start(&[("SERVICE_BATCH_MAX", "10"), ("SSE_MAX_PAYLOAD", "1KiB")]).await;
    let ann = server.signup("ann").await;
    let ann_id = server.user_id("ann").await;
    let (mut stream, _) = ann.open("").await;
    let secret = server.create_token("svc", "publish", None);
    let ok = json!({"target": {"user": ann_id}, "event": "leak", "data": {}});
    let mut bad_batch = vec![ok.clone(), ok.clone()];
    bad_batch.push(json!({"target": {"user": ann_id}, "event": "sse-reset"}));
    for (body, status, code) in [
        ("{not json".to_string(), 400, "bad_json"),
        ("[]".to_string(), 400, "empty_batch"),
        (json!({"target": "everyone"}).to_string(), 400, "bad_json"),
        (
            json!({"target": {"user": ann_id}, "event": "connected"}).to_string(),
            400,
            "bad_event",
        ),
        (
            json!({"target": {"user": ann_id}, "event": "a\nb"}).to_string(),
            400,
            "bad_event",
        ),
        (
            json!({"target": {"user": ann_id}, "event": "big", "data": "x".repeat(2000)})
                .to_string(),
            400,
            "payload_too_large",
        ),
        (
            json!({"target": {"channel": "role:admin x"}, "event": "e"}).to_string(),
            400,
            "bad_json",
        ),
        (
            json!({"target": {"session": "s"}, "event": "e", "persistent": true}).to_string(),
            400,
            "not_storable",
        ),
        (
            json!({"target": {"users": []}, "event": "e"}).to_string(),
            400,
            "no_target",
        ),
        (
            json!({"target": "everyone", "event": "e", "idempotencyKey": ""}).to_string(),
            400,
            "bad_idempotency_key",
        ),
        (
            serde_json::Value::Array(bad_batch).to_string(),
            400,
            "bad_event",
        ),
        (
            serde_json::Value::Array(vec![ok.clone(); 11]).to_string(),
            413,
            "batch_too_large",
        ),
    ] {
        let (got, json) = publish(&server.base, &secret, &body).await;
        assert_refusal(got, &json, status, code);
        if code == "bad_event" && body.starts_with('[') {
            assert_eq!(json["index"], 2, "{json}");
        }
    }
    nothing_before_marker(&server, &secret, &ann_id, &mut stream).await;
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn every_target_reaches_exactly_its_clients_and_persistent_ones_land_in_the_inbox() {
    let server = TestServer::start(&[]).await;
    let ann = server.signup("ann").await;
    let bob = server.signup("bob").await;
    let (ann_id, bob_id) = (server.user_id("ann").await, server.user_id("bob").await);
    let (mut ann_home, ann_client) = ann.open("?tag=page:home").await;
    let (mut bob_s, _) = bob.open("").await;
    let secret = server.create_token("svc", "publish", None);
    let send = |target: serde_json::Value, event: &str| {
        json!({"target": target, "event": event, "data": {"e": event}}).to_string()
    };
    for body in [
        send(json!({"user": ann_id}), "to-ann"),
        send(json!({"users": [ann_id, bob_id]}), "to-both"),
        send(json!({"clients": [ann_client]}), "to-ann-client"),
        send(json!({"channel": "page:home"}), "to-home"),
        send(json!("everyone"), "to-all"),
    ] {
        let (status, answer) = publish(&server.base, &secret, &body).await;
        assert_eq!(status, 200, "{answer}");
    }
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(ann_home.next_event(WAIT).await.expect("ann's event").0);
    }
    assert_eq!(
        got,
        ["to-ann", "to-both", "to-ann-client", "to-home", "to-all"]
    );
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(bob_s.next_event(WAIT).await.expect("bob's event").0);
    }
    assert_eq!(got, ["to-both", "to-all"]);
    assert_eq!(bob_s.next_event(Duration::from_millis(300)).await, None);

    // Persistent: stored first, its inbox id in the answer and the event id.
    let body = json!({"target": {"user": bob_id}, "event": "notification", "persistent": true,
        "data": {"message": "stored", "from": null, "sentAt": 1}});
    let (status, answer) = publish(&server.base, &secret, &body.to_string()).await;
    assert_eq!(status, 200, "{answer}");
    let inbox_id = answer["inboxId"].as_i64().expect("inboxId");
    let (id, name, _) = bob_s.next_with_id(WAIT).await.expect("stored event");
    assert_eq!(
        (name.as_str(), crate::support::inbox_id(&id)),
        ("notification", inbox_id)
    );
    let (status, page) = bob.post_json("/api/inbox/list", "{}").await;
    assert_eq!(status, 200);
    assert_eq!(page["items"][0]["id"], inbox_id, "{page}");
    let (_, page) = ann.post_json("/api/inbox/list", "{}").await;
    assert!(
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|i| i["id"] != inbox_id)
    );
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_batch_of_1000_arrives_once_each_in_order_across_a_reconnect_beside_a_concurrent_sender()
{
    let server = TestServer::start(&[]).await;
    let ann = server.signup("ann").await;
    let ann_id = server.user_id("ann").await;
    let (mut stream, _) = ann.open("").await;
    let secret = server.create_token("svc", "publish", None);
    let batch: Vec<serde_json::Value> = (0..1000)
        .map(|n| json!({"target": {"user": ann_id}, "event": "seq", "data": {"n": n}}))
        .collect();
    let body = serde_json::Value::Array(batch).to_string();
    // Where a reader cut off before its first event resumes from.
    let start = json!({"target": {"user": ann_id}, "event": "start"}).to_string();
    assert_eq!(publish(&server.base, &secret, &start).await.0, 200);
    let (start_id, name, _) = stream.next_with_id(WAIT).await.expect("start");
    assert_eq!(name, "start");
    // Another service publishes single events at the same time.
    let side = {
        let (base, secret, ann_id) = (server.base.clone(), secret.clone(), ann_id.clone());
        tokio::spawn(async move {
            for n in 0..100 {
                let body = json!({"target": {"user": ann_id}, "event": "side", "data": {"n": n}});
                let (status, answer) = publish(&base, &secret, &body.to_string()).await;
                assert_eq!(status, 200, "{answer}");
            }
        })
    };
    let batch_task = {
        let (base, secret) = (server.base.clone(), secret.clone());
        tokio::spawn(async move { publish(&base, &secret, &body).await })
    };
    let (mut seq, mut sides) = (Vec::new(), Vec::new());
    let mut last_id = start_id;
    let (mut reconnected, mut resumes) = (false, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seq.len() < 1000 || sides.len() < 100 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stalled at {} seq, {} side",
            seq.len(),
            sides.len()
        );
        let Some((id, name, data)) = stream.next_with_id(Duration::from_secs(2)).await else {
            // Ended (a burst past `sse.queue_len` cuts a slow reader off) or
            // quiet: resume where it was, as `EventSource` does.
            resumes += 1;
            assert!(resumes < 50, "too many resumes");
            stream = ann.resume("", &last_id).await.0;
            continue;
        };
        let n = serde_json::from_str::<serde_json::Value>(&data).expect("json")["n"]
            .as_i64()
            .expect("n");
        match name.as_str() {
            "seq" => seq.push(n),
            "side" => sides.push(n),
            other => panic!("unexpected {other}"),
        }
        last_id = id.clone();
        if !reconnected && seq.len() == 400 {
            // The reader drops its connection and resumes where it was.
            reconnected = true;
            drop(stream);
            stream = ann.resume("", &id).await.0;
        }
    }
    let (status, answer) = batch_task.await.expect("batch task");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["results"].as_array().expect("results").len(), 1000);
    side.await.expect("side sender");
    assert_eq!(
        seq,
        (0..1000).collect::<Vec<_>>(),
        "the batch, once each, in order"
    );
    assert_eq!(
        sides,
        (0..100).collect::<Vec<_>>(),
        "the other sender's, once each, in order"
    );
    assert!(reconnected);
    assert_eq!(
        stream.next_event(Duration::from_millis(300)).await,
        None,
        "nothing more"
    );
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn an_idempotent_retry_delivers_once_and_answers_the_first_result() {
    let server = TestServer::start(&[]).await;
    let ann = server.signup("ann").await;
    let ann_id = server.user_id("ann").await;
    let (mut stream, _) = ann.open("").await;
    let secret = server.create_token("svc", "publish", None);
    let other = server.create_token("other", "publish", None);
    let body = json!({"target": {"user": ann_id}, "event": "once", "data": {}, "idempotencyKey": "order-17"}).to_string();
    let (status, first, headers) =
        post_with_token(&server.base, "/api/publish", &secret, &body).await;
    assert_eq!(status, 200, "{first}");
    assert!(headers.get("idempotent-replayed").is_none());
    // Ten retries at once: none delivers again.
    let retries: Vec<_> = (0..10)
        .map(|_| {
            let (base, secret, body) = (server.base.clone(), secret.clone(), body.clone());
            tokio::spawn(
                async move { post_with_token(&base, "/api/publish", &secret, &body).await },
            )
        })
        .collect();
    for retry in retries {
        let (status, answer, headers) = retry.await.expect("retry");
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["replayed"], true);
        assert_eq!(answer["connections"], first["connections"]);
        assert_eq!(headers["idempotent-replayed"], "true");
    }
    assert_eq!(stream.next_event(WAIT).await.expect("once").0, "once");
    // The same key from another token is another key.
    let (status, answer) = publish(&server.base, &other, &body).await;
    assert_eq!((status, answer.get("replayed")), (200, None));
    assert_eq!(
        stream.next_event(WAIT).await.expect("the other's").0,
        "once"
    );
    // A batch: keyed items already published are answered, not sent.
    let batch = json!([
        {"target": {"user": ann_id}, "event": "b1", "idempotencyKey": "order-17"},
        {"target": {"user": ann_id}, "event": "b2", "idempotencyKey": "order-18"},
        {"target": {"user": ann_id}, "event": "b3"}
    ])
    .to_string();
    let (status, answer) = publish(&server.base, &secret, &batch).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["results"][0]["replayed"], true);
    assert_eq!(answer["results"][1].get("replayed"), None);
    let (status, again) = publish(&server.base, &secret, &batch).await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            again["results"][0]["replayed"].clone(),
            again["results"][1]["replayed"].clone()
        ),
        (json!(true), json!(true))
    );
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(stream.next_event(WAIT).await.expect("batch event").0);
    }
    assert_eq!(
        got,
        ["b2", "b3", "b3"],
        "keyed items once, the unkeyed one each time"
    );
    nothing_before_marker(&server, &secret, &ann_id, &mut stream).await;
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_token_over_its_rate_gets_429_and_delivers_nothing() {
    let server = TestServer::start(&[]).await;
    let ann = server.signup("ann").await;
    let ann_id = server.user_id("ann").await;
    let (mut stream, _) = ann.open("").await;
    let slow = server.create_token("slow", "publish", Some(5));
    let fast = server.create_token("fast", "publish", None);
    let one = json!({"target": {"user": ann_id}, "event": "e"});
    let (status, answer) = publish(
        &server.base,
        &slow,
        &serde_json::Value::Array(vec![one.clone(); 5]).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    for _ in 0..5 {
        assert_eq!(stream.next_event(WAIT).await.expect("e").0, "e");
    }
    let response = reqwest::Client::new()
        .post(server.url("/api/publish"))
        .header("authorization", format!("Bearer {slow}"))
        .body(one.to_string())
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 429);
    let wait: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("text")
        .parse()
        .expect("secs");
    assert!((1..=60).contains(&wait), "{wait}");
    let json: serde_json::Value = response.json().await.expect("json");
    assert_eq!(json["error"], "rate_limited");
    nothing_before_marker(&server, &fast, &ann_id, &mut stream).await;
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_stream_token_opens_a_stream_of_its_user_only_and_is_refused_when_made_up_or_expired() {
    let server = TestServer::start(&[]).await;
    let _ann = server.signup("ann").await;
    let bob = server.signup("bob").await;
    let (ann_id, bob_id) = (server.user_id("ann").await, server.user_id("bob").await);
    let (mut bob_cookie, _) = bob.open("").await;
    let minter = server.create_token("mobile-api", "subscribe", None);
    let publisher = server.create_token("svc", "publish", None);
    let token = mint(&server.base, &minter, &ann_id, &[], 60).await;
    // As a query parameter (EventSource) and as a Bearer header.
    let (mut by_query, _) = open_with_token(&server.base, &token, "").await;
    let response = reqwest::Client::new()
        .get(server.url("/api/sse"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 200);
    let mut by_header = SseStream::new(response);
    assert_eq!(
        by_header.next_event(WAIT).await.expect("connected").0,
        "connected"
    );
    by_header.take_backlog().await;
    let body = json!({"target": {"user": ann_id}, "event": "for-ann"}).to_string();
    assert_eq!(publish(&server.base, &publisher, &body).await.0, 200);
    let body = json!({"target": {"user": bob_id}, "event": "for-bob"}).to_string();
    assert_eq!(publish(&server.base, &publisher, &body).await.0, 200);
    for stream in [&mut by_query, &mut by_header] {
        assert_eq!(stream.next_event(WAIT).await.expect("ann's").0, "for-ann");
        assert_eq!(
            stream.next_event(Duration::from_millis(300)).await,
            None,
            "bob's event leaked"
        );
    }
    assert_eq!(
        bob_cookie.next_event(WAIT).await.expect("bob's").0,
        "for-bob"
    );

    // Made up, signed with another key, tampered, expired: 401 and nothing.
    let mut tampered = token.clone();
    tampered.replace_range(tampered.len() - 4.., "AAAA");
    let foreign = {
        use jsonwebtoken::{EncodingKey, Header, encode};
        let claims = json!({"iss": "axum_sse_notify", "aud": "sse-stream", "sub": ann_id,
            "iat": 0, "exp": 4_000_000_000u64, "jti": "x", "channels": []});
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(&[9; 32]).expect("key"),
        )
        .expect("jwt")
    };
    for (bad, code) in [
        ("made-up", "invalid_token"),
        (foreign.as_str(), "invalid_token"),
        (tampered.as_str(), "invalid_token"),
        (minter.as_str(), "invalid_token"),
    ] {
        let (status, json) = refused(connect_with_token(&server.base, bad, "").await).await;
        assert_refusal(status, &json, 401, code);
    }
    let short = mint(&server.base, &minter, &ann_id, &[], 2).await;
    let (mut expiring, _) = open_with_token(&server.base, &short, "").await;
    // The stream ends when its token expires (within a second of it).
    assert!(
        expiring.ends_within(Duration::from_secs(4)).await,
        "stream outlived its token"
    );
    let (status, json) = refused(connect_with_token(&server.base, &short, "").await).await;
    assert_refusal(status, &json, 401, "token_expired");
    // Bounds on minting.
    for (body, code) in [
        (json!({"user": ann_id, "ttlSeconds": 0}), "bad_ttl"),
        (json!({"user": ann_id, "ttlSeconds": 100_000}), "bad_ttl"),
        (
            json!({"user": ann_id, "channels": ["no colon"]}),
            "bad_json",
        ),
        (json!({"user": "a\nb"}), "bad_claim"),
    ] {
        let (status, json, _) = post_with_token(
            &server.base,
            "/api/tokens/stream",
            &minter,
            &body.to_string(),
        )
        .await;
        assert_refusal(status, &json, 400, code);
    }
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_token_stream_resumes_with_last_event_id_like_a_cookie_one() {
    let server = TestServer::start(&[]).await;
    let _ann = server.signup("ann").await;
    let ann_id = server.user_id("ann").await;
    let minter = server.create_token("m", "subscribe", None);
    let publisher = server.create_token("p", "publish", None);
    let token = mint(&server.base, &minter, &ann_id, &["room:blue"], 60).await;
    let (mut stream, _) = open_with_token(&server.base, &token, "?tag=room:blue").await;
    let send =
        |n: u32| json!({"target": {"channel": "room:blue"}, "event": "n", "data": n}).to_string();
    let mut last = String::new();
    for n in 0..5 {
        assert_eq!(publish(&server.base, &publisher, &send(n)).await.0, 200);
        let (id, _, data) = stream.next_with_id(WAIT).await.expect("event");
        assert_eq!(data, n.to_string());
        last = id;
    }
    drop(stream);
    for n in 5..10 {
        assert_eq!(publish(&server.base, &publisher, &send(n)).await.0, 200);
    }
    // A new token, as a client that refreshed its token would have.
    let fresh = mint(&server.base, &minter, &ann_id, &["room:blue"], 60).await;
    let response = reqwest::Client::new()
        .get(server.url(&format!("/api/sse?tag=room:blue&access_token={fresh}")))
        .header("last-event-id", &last)
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 200);
    let mut resumed = SseStream::new(response);
    assert_eq!(
        resumed.next_event(WAIT).await.expect("connected").0,
        "connected"
    );
    let mut got = Vec::new();
    for _ in 5..10 {
        got.push(resumed.next_event(WAIT).await.expect("missed").1);
    }
    assert_eq!(got, ["5", "6", "7", "8", "9"], "exactly what was missed");
    assert_eq!(resumed.next_event(Duration::from_millis(300)).await, None);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn channels_are_joined_by_token_claims_or_by_the_demo_policy_and_refused_otherwise() {
    let server = TestServer::start(&[]).await;
    let ann = server.signup("ann").await;
    let bob = server.signup("bob").await;
    let ann_id = server.user_id("ann").await;
    let minter = server.create_token("m", "subscribe", None);
    let publisher = server.create_token("p", "publish", None);

    // Cookie sessions: the demo's policy.
    for (user, query, status, code) in [
        (&ann, "?tag=room:blue", 403, "channel_forbidden"),
        (&ann, "?tag=team:42", 403, "channel_forbidden"),
        (
            &ann,
            "?tag=page:home&tag=room:blue",
            403,
            "channel_forbidden",
        ),
        (&ann, "?tag=role:admin", 400, "reserved_tag"),
        (&ann, "?tag=user:bob", 400, "reserved_tag"),
    ] {
        let (got, json) = refused(user.connect(query).await).await;
        assert_refusal(got, &json, status, code);
    }
    let (status, rooms) = ann.post_json("/api/rooms/join", r#"{"room":"blue"}"#).await;
    assert_eq!((status, rooms), (200, json!(["blue"])));
    // Signed out, nobody joins anything.
    let response = reqwest::Client::new()
        .post(server.url("/api/rooms/join"))
        .header("content-type", "application/json")
        .body(r#"{"room":"blue"}"#)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 401);
    let (status, json) = ann
        .post_json("/api/rooms/join", r#"{"room":"no way"}"#)
        .await;
    assert_eq!((status, json["error"].as_str()), (400, Some("bad_room")));
    let (mut ann_blue, _) = ann.open("?tag=room:blue&tag=page:home").await;
    let (got, json) = refused(bob.connect("?tag=room:blue").await).await;
    assert_refusal(got, &json, 403, "channel_forbidden");
    let (mut bob_home, _) = bob.open("?tag=page:home").await;

    // Tokens: their claims, not the policy.
    let token = mint(
        &server.base,
        &minter,
        &ann_id,
        &["room:green", "page:*"],
        60,
    )
    .await;
    for (query, status, code) in [
        ("?tag=room:blue", 403, "channel_forbidden"),
        ("?tag=room:red", 403, "channel_forbidden"),
        ("?tag=role:admin", 400, "reserved_tag"),
    ] {
        let (got, json) = refused(connect_with_token(&server.base, &token, query).await).await;
        assert_refusal(got, &json, status, code);
    }
    let (mut token_green, _) =
        open_with_token(&server.base, &token, "?tag=room:green&tag=page:any").await;

    let to = |channel: &str, event: &str| {
        json!({"target": {"channel": channel}, "event": event}).to_string()
    };
    for (channel, event) in [
        ("room:blue", "blue"),
        ("room:green", "green"),
        ("page:home", "home"),
    ] {
        assert_eq!(
            publish(&server.base, &publisher, &to(channel, event))
                .await
                .0,
            200
        );
    }
    assert_eq!(ann_blue.next_event(WAIT).await.expect("blue").0, "blue");
    assert_eq!(ann_blue.next_event(WAIT).await.expect("home").0, "home");
    assert_eq!(
        token_green.next_event(WAIT).await.expect("green").0,
        "green"
    );
    assert_eq!(bob_home.next_event(WAIT).await.expect("home").0, "home");
    for stream in [&mut ann_blue, &mut token_green, &mut bob_home] {
        assert_eq!(
            stream.next_event(Duration::from_millis(300)).await,
            None,
            "a channel leaked"
        );
    }
    // Leaving refuses the next connect.
    let (status, rooms) = ann
        .post_json("/api/rooms/leave", r#"{"room":"blue"}"#)
        .await;
    assert_eq!((status, rooms), (200, json!([])));
    let (got, _) = refused(ann.connect("?tag=room:blue").await).await;
    assert_eq!(got, 403);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn only_allow_listed_origins_get_cors_headers() {
    let server = TestServer::start(&[("SSE_CORS_ORIGINS", "https://app.example")]).await;
    let _ann = server.signup("ann").await;
    let ann_id = server.user_id("ann").await;
    let minter = server.create_token("m", "subscribe", None);
    let token = mint(&server.base, &minter, &ann_id, &[], 60).await;
    let client = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, server.url("/api/sse"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let allowed = preflight("https://app.example").await.expect("OPTIONS");
    assert_eq!(allowed.status(), 204);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(
        allowed.headers()["access-control-allow-headers"]
            .to_str()
            .expect("text")
            .contains("authorization")
    );
    assert!(
        allowed
            .headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    let other = preflight("https://evil.example").await.expect("OPTIONS");
    assert_eq!(other.status(), 403);
    assert!(other.headers().get("access-control-allow-origin").is_none());
    for (origin, allowed) in [
        ("https://app.example", true),
        ("https://evil.example", false),
    ] {
        let response = client
            .get(server.url(&format!("/api/sse?access_token={token}")))
            .header("origin", origin)
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response
                .headers()
                .get("access-control-allow-origin")
                .is_some(),
            allowed,
            "{origin}"
        );
    }
    server.shutdown().await.expect("clean shutdown");
}

/// Broadcasts from four services at once reach every stream exactly once
/// each, each service's in its order, while one reader stops reading long
/// enough for its socket to fill: the sends that find a stream idle write
/// to its socket themselves, and hand what does not fit to the stream.
#[tokio::test]
async fn concurrent_broadcasts_reach_every_stream_once_in_order_past_a_stalled_reader() {
    const SENDERS: usize = 4;
    const EACH: usize = 120;
    let server = TestServer::start(&[("SSE_QUEUE_LEN", "100000")]).await;
    let ann = server.signup("ann").await;
    let bob = server.signup("bob").await;
    let mut streams = Vec::new();
    for user in [&ann, &bob] {
        for _ in 0..5 {
            streams.push(user.open("").await.0);
        }
    }
    let (stalled, _) = ann.open("").await;
    let secret = server.create_token("svc", "publish", None);
    // 16 KiB each: 120 × 4 of them are far more than a socket holds.
    let pad = "x".repeat(16 * 1024);
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let (base, secret, pad) = (server.base.clone(), secret.clone(), pad.clone());
            tokio::spawn(async move {
                for n in 0..EACH {
                    let body = json!({"target": "everyone", "event": "b",
                        "data": {"s": s, "n": n, "pad": pad}});
                    let (status, answer) = publish(&base, &secret, &body.to_string()).await;
                    assert_eq!(status, 200, "{answer}");
                }
            })
        })
        .collect();
    let read_all = |mut stream: SseStream, stall: Duration| async move {
        tokio::time::sleep(stall).await;
        let mut seen = vec![Vec::new(); SENDERS];
        while seen.iter().map(Vec::len).sum::<usize>() < SENDERS * EACH {
            let (name, data) = stream
                .next_event(Duration::from_secs(30))
                .await
                .expect("the next broadcast");
            assert_eq!(name, "b");
            let json: serde_json::Value = serde_json::from_str(&data).expect("json");
            let s = json["s"].as_u64().expect("s") as usize;
            seen[s].push(json["n"].as_u64().expect("n") as usize);
        }
        // Nothing more: no copy of any event arrives late.
        assert!(
            stream
                .next_event(Duration::from_millis(300))
                .await
                .is_none()
        );
        seen
    };
    let mut readers: Vec<_> = streams
        .into_iter()
        .map(|stream| tokio::spawn(read_all(stream, Duration::ZERO)))
        .collect();
    readers.push(tokio::spawn(read_all(stalled, Duration::from_secs(3))));
    for sender in senders {
        sender.await.expect("sender");
    }
    for (i, reader) in readers.into_iter().enumerate() {
        let seen = reader.await.expect("reader");
        for (s, got) in seen.iter().enumerate() {
            assert_eq!(
                got,
                &(0..EACH).collect::<Vec<_>>(),
                "stream {i}, sender {s}: once each, in order"
            );
        }
    }
    server.shutdown().await.expect("clean shutdown");
}
