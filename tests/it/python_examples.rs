//! The Python examples (`examples/python`) against a real server: a
//! publisher with a service token and a subscriber with a stream token,
//! and exactly what was sent arrives, once, in order. The interpreter is
//! `EXAMPLES_PYTHON` (`make test` sets it to the venv `make python-deps`
//! fills), else `.tools/python/bin/python`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

fn python() -> String {
    let python = std::env::var("EXAMPLES_PYTHON")
        .unwrap_or_else(|_| format!("{}/.tools/python/bin/python", env!("CARGO_MANIFEST_DIR")));
    assert!(
        std::path::Path::new(&python).exists(),
        "no Python for the examples at {python}: run `make python-deps` (or set EXAMPLES_PYTHON)"
    );
    python
}

fn example(name: &str) -> String {
    format!("{}/examples/python/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn the_python_publisher_reaches_the_python_subscriber_exactly() {
    let python = python();
    let server = TestServer::start(&[]).await;
    let _ann = server.signup("ann").await;
    let ann_id = server.user_id("ann").await;
    let publisher = server.create_token("py-publisher", "publish", None);
    let minter = server.create_token("py-mobile", "subscribe", None);
    let stream_token = mint(&server.base, &minter, &ann_id, &[], 120).await;
    const COUNT: usize = 50;

    let mut subscriber = Command::new(&python)
        .arg(example("subscriber.py"))
        .arg(COUNT.to_string())
        .env("SSE_NOTIFY_URL", &server.base)
        .env("SSE_NOTIFY_STREAM_TOKEN", &stream_token)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the subscriber");
    let stdout = subscriber.stdout.take().expect("stdout");
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let ready = tokio::time::timeout(Duration::from_secs(20), lines.recv())
        .await
        .expect("the subscriber connects")
        .expect("a line");
    assert_eq!(ready, "ready");

    let mut publisher_run = Command::new(&python);
    publisher_run
        .arg(example("publisher.py"))
        .arg(&ann_id)
        .arg(COUNT.to_string())
        .env("SSE_NOTIFY_URL", &server.base)
        .env("SSE_NOTIFY_TOKEN", &publisher);
    let publish = tokio::task::spawn_blocking(move || publisher_run.output())
        .await
        .expect("join")
        .expect("run the publisher");
    assert!(
        publish.status.success(),
        "{}",
        String::from_utf8_lossy(&publish.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&publish.stdout).expect("the publisher's JSON line");
    assert_eq!(summary["published"], COUNT);
    assert_eq!(summary["retried"], COUNT - 1);
    assert_eq!(
        summary["replayed"],
        COUNT - 1,
        "the retry delivered nothing again"
    );

    let mut received = Vec::new();
    while received.len() < COUNT {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.recv())
            .await
            .unwrap_or_else(|_| panic!("stalled after {} events", received.len()))
            .expect("a line");
        let event: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
        received.push(event["data"]["n"].as_u64().expect("n"));
    }
    let status = tokio::task::spawn_blocking(move || subscriber.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(
        status.success(),
        "the subscriber exits after {COUNT} events"
    );
    assert_eq!(
        received,
        (0..COUNT as u64).collect::<Vec<_>>(),
        "once each, in order"
    );
    server.shutdown().await.expect("clean shutdown");
}
