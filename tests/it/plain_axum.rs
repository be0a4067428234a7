//! The SSE layer without the rest of the app: `sse::routes` mounted in a
//! minimal axum app, served by plain `axum::serve` (not the app's
//! connection server), with an identity set by a ten-line middleware.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{Next, from_fn};
use axum::response::Response;
use sse_notify::sse::{Identity, Notifier, SessionId, SseConfig, Target, UserId};
use tokio::net::TcpListener;

use crate::support::{Item, SseStream};

const WAIT: Duration = Duration::from_secs(5);

/// The caller's identity from an `x-user` header (a real app would read
/// its session here).
async fn identify(mut request: Request, next: Next) -> Response {
    let user = request
        .headers()
        .get("x-user")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(user) = user {
        request.extensions_mut().insert(Identity {
            user: UserId::new(user.clone()),
            username: user.clone(),
            session: SessionId::new(format!("session-of-{user}")),
            tags: Vec::new(),
            since: None,
        });
    }
    next.run(request).await
}

async fn plain_app(config: SseConfig) -> (String, Notifier) {
    let notifier = Notifier::new(config);
    let app: Router = sse_notify::sse::routes::<Notifier>()
        .layer(from_fn(identify))
        .with_state(notifier.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    (format!("http://{addr}"), notifier)
}

async fn open(base: &str, user: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{base}/api/sse"))
        .header("x-user", user)
        .send()
        .await
        .unwrap()
}

async fn wait_for_clients(notifier: &Notifier, expected: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while notifier.registry().len() != expected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} clients registered, expected {expected}",
            notifier.registry().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn events_reach_a_stream_served_by_plain_axum_serve() {
    let (base, notifier) = plain_app(SseConfig::default()).await;
    let response = open(&base, "ada").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = SseStream::new(response);
    let (name, data) = stream.next_event(WAIT).await.expect("connected event");
    assert_eq!(name, "connected");
    assert!(data.contains("clientId"), "{data}");

    let ada = UserId::new("ada".to_string());
    for n in 0..3 {
        let sent = notifier
            .send_json(
                &Target::user(ada.clone()),
                "note",
                &serde_json::json!({ "n": n }),
            )
            .unwrap();
        assert_eq!(sent, 1);
    }
    // Someone else's event does not arrive.
    notifier
        .send_json(
            &Target::user(UserId::new("bob".to_string())),
            "note",
            &serde_json::json!({ "n": 99 }),
        )
        .unwrap();
    for n in 0..3 {
        let (name, data) = stream.next_event(WAIT).await.expect("event");
        assert_eq!(name, "note");
        assert_eq!(data, format!(r#"{{"n":{n}}}"#));
    }
    assert!(
        stream
            .next_event(Duration::from_millis(300))
            .await
            .is_none(),
        "only ada's three events"
    );

    // Closing the stream unregisters the client.
    drop(stream);
    wait_for_clients(&notifier, 0).await;
}

#[tokio::test]
async fn without_an_identity_the_stream_is_refused_with_json() {
    let (base, _notifier) = plain_app(SseConfig::default()).await;
    let response = reqwest::get(format!("{base}/api/sse")).await.unwrap();
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unauthenticated");
}

#[tokio::test]
async fn the_peer_address_from_axum_counts_for_the_per_address_limit() {
    let config = SseConfig {
        per_address_max: 1,
        ..SseConfig::default()
    };
    let (base, notifier) = plain_app(config).await;
    let first = open(&base, "ada").await;
    assert_eq!(first.status(), 200);
    let mut first = SseStream::new(first);
    assert!(matches!(
        first.next_within(WAIT).await,
        Some(Item::Retry(_)) | Some(Item::Event { .. })
    ));
    let second = open(&base, "bob").await;
    assert_eq!(second.status(), 429);
    assert!(second.headers().contains_key("retry-after"));
    let body: serde_json::Value = second.json().await.unwrap();
    assert_eq!(body["error"], "too_many_connections_from_address");
    drop(first);
    wait_for_clients(&notifier, 0).await;
}

#[tokio::test]
async fn a_shutdown_ends_the_streams() {
    let (base, notifier) = plain_app(SseConfig::default()).await;
    let mut stream = SseStream::new(open(&base, "ada").await);
    assert!(stream.next_event(WAIT).await.is_some());
    notifier.shutdown();
    assert!(stream.ends_within(WAIT).await);
    wait_for_clients(&notifier, 0).await;
}
