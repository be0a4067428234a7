//! A service's side of service mode: publishing with a service token,
//! minting stream tokens, and streams opened with them (no cookie).

use std::time::Duration;

use super::*;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// `POST {path}` with `Authorization: Bearer {secret}` (none if empty);
/// the status, the JSON answer and the response's headers.
pub async fn post_with_token(
    base: &str,
    path: &str,
    secret: &str,
    body: &str,
) -> (u16, serde_json::Value, reqwest::header::HeaderMap) {
    let mut request = client()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if !secret.is_empty() {
        request = request.header("authorization", format!("Bearer {secret}"));
    }
    let response = request.send().await.expect("POST");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, json, headers)
}

/// `POST /api/publish`.
pub async fn publish(base: &str, secret: &str, body: &str) -> (u16, serde_json::Value) {
    let (status, json, _) = post_with_token(base, "/api/publish", secret, body).await;
    (status, json)
}

/// A stream token for `user` from `POST /api/tokens/stream`.
pub async fn mint(base: &str, secret: &str, user: &str, channels: &[&str], ttl: u64) -> String {
    let body = serde_json::json!({ "user": user, "channels": channels, "ttlSeconds": ttl });
    let (status, json, _) =
        post_with_token(base, "/api/tokens/stream", secret, &body.to_string()).await;
    assert_eq!(status, 200, "mint: {json}");
    json["token"].as_str().expect("token").to_string()
}

/// `GET /api/sse{query}` with a stream token in `access_token=` (as an
/// `EventSource` sends it), no cookie.
pub async fn connect_with_token(base: &str, token: &str, query: &str) -> reqwest::Response {
    let separator = if query.is_empty() { "?" } else { "&" };
    client()
        .get(format!(
            "{base}/api/sse{query}{separator}access_token={token}"
        ))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("GET /api/sse")
}

/// A token stream, read up to its `connected` event and, on a fresh one,
/// the inbox backlog after it; (stream, client id).
pub async fn open_with_token(base: &str, token: &str, query: &str) -> (SseStream, String) {
    let response = connect_with_token(base, token, query).await;
    assert_eq!(response.status(), 200, "token stream {query}");
    let mut stream = SseStream::new(response);
    stream.next_within(Duration::from_secs(2)).await;
    let (name, data) = stream
        .next_event(Duration::from_secs(2))
        .await
        .expect("connected event");
    assert_eq!(name, "connected");
    let json: serde_json::Value = serde_json::from_str(&data).expect("JSON");
    if !query.contains("lastEventId=") {
        stream.take_backlog().await;
    }
    (
        stream,
        json["clientId"].as_str().expect("clientId").to_string(),
    )
}

/// The status and JSON body of a refused stream request.
pub async fn refused(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, json)
}

/// The next `sse-presence` event on `stream` as (action, name, channel),
/// skipping everything else; `None` if none comes within `wait`.
pub async fn next_presence(
    stream: &mut SseStream,
    wait: Duration,
) -> Option<(String, String, String)> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (name, data) = stream.next_event(left).await?;
        if name == "sse-presence" {
            let change: serde_json::Value = serde_json::from_str(&data).expect("JSON");
            let text = |field: &str| change[field].as_str().expect(field).to_string();
            return Some((text("action"), text("name"), text("channel")));
        }
    }
}
