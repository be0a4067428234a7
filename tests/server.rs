//! Starts the real server on an ephemeral port and talks HTTP to it.

use std::path::Path;
use std::time::Duration;

use sse_notify::config::Config;
use sse_notify::server;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A running server and the means to stop it.
struct TestServer {
    base: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    async fn start() -> Self {
        let config = Config::load(
            Some((Path::new("Leptos.toml"), include_str!("../Leptos.toml"))),
            |name| (name == "SERVER_SHUTDOWN_TIMEOUT").then(|| "2s".to_string()),
        )
        .expect("test config");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(listener, config, async move {
            let _ = stopped.await;
        }));
        TestServer {
            base,
            stop: Some(stop),
            task,
        }
    }

    async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .expect("server stops within 5 s")
            .expect("server task did not panic")
    }
}

#[tokio::test]
async fn landing_page_is_rendered_on_the_server() {
    let server = TestServer::start().await;
    let response = reqwest::get(format!("{}/", server.base))
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
    let server = TestServer::start().await;
    let response = reqwest::get(format!("{}/nope", server.base))
        .await
        .expect("GET /nope");
    assert_eq!(response.status(), 404);
    let body = response.text().await.expect("body");
    assert!(body.contains("Page not found"));
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn home_placeholder_renders() {
    let server = TestServer::start().await;
    let response = reqwest::get(format!("{}/home", server.base))
        .await
        .expect("GET /home");
    assert_eq!(response.status(), 200);
    assert!(
        response
            .text()
            .await
            .expect("body")
            .contains("Your notifications")
    );
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn shutdown_stops_accepting_connections() {
    let server = TestServer::start().await;
    let base = server.base.clone();
    server.shutdown().await.expect("clean shutdown");
    assert!(
        reqwest::get(format!("{base}/")).await.is_err(),
        "still serving after shutdown"
    );
}
