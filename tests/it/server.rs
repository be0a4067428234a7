//! The real server on an ephemeral port: pages, 404, shutdown.

use crate::support::TestServer;

#[tokio::test]
async fn landing_page_is_rendered_on_the_server() {
    let server = TestServer::start(&[]).await;
    let response = server
        .browser()
        .get(server.url("/"))
        .send()
        .await
        .expect("GET /");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let body = response.text().await.expect("body");
    assert!(body.contains("Real-time notifications, straight from your Rust backend"));
    assert!(body.contains("Preview a notification"));
    // The hydration scripts point at the bundle the build produces.
    assert!(body.contains("/pkg/sse_notify"), "hydration script missing");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn unknown_path_is_a_404_page() {
    let server = TestServer::start(&[]).await;
    let response = server
        .browser()
        .get(server.url("/nope"))
        .send()
        .await
        .expect("GET /nope");
    assert_eq!(response.status(), 404);
    let body = response.text().await.expect("body");
    assert!(body.contains("Page not found"));
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn shutdown_stops_accepting_connections() {
    let server = TestServer::start(&[]).await;
    let url = server.url("/");
    server.shutdown().await.expect("clean shutdown");
    assert!(
        reqwest::get(url).await.is_err(),
        "still serving after shutdown"
    );
}
