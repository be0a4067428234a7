//! SIGTERM drains: 2 000 streams on A end within `drain_delay +
//! drain_window`, their reconnects (to B, as a load balancer would send
//! them) are spread over the window, and with the shared history no
//! client misses or repeats an event sent meanwhile.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::Cluster;
use crate::support::{Item, SseStream, User, signup_on};

const STREAMS: usize = 2000;
const DELAY: Duration = Duration::from_secs(1);
const WINDOW: Duration = Duration::from_secs(4);

/// What one client saw.
#[derive(Default)]
struct Seen {
    ticks: Vec<u64>,
    ended_at: Option<Instant>,
    reconnected_at: Option<Instant>,
    resets: usize,
}

/// Reads `stream` until it ends (returns true) or the test is over; a
/// `retry:` sets the reconnect delay.
async fn read(
    stream: &mut SseStream,
    seen: &Mutex<Seen>,
    last_id: &mut String,
    retry: &mut u64,
) -> bool {
    loop {
        match stream.next_within(Duration::from_secs(30)).await {
            None => return true,
            Some(Item::Retry(ms)) => *retry = ms,
            Some(Item::Event { id, name, data }) => {
                if let Some(id) = id {
                    *last_id = id;
                }
                let mut seen = seen.lock().await;
                match name.as_str() {
                    "tick" => {
                        let json: serde_json::Value = serde_json::from_str(&data).unwrap();
                        let n = json["message"].as_str().unwrap().parse().unwrap();
                        seen.ticks.push(n);
                    }
                    "sse-reset" => seen.resets += 1,
                    "done" => return false,
                    _ => {}
                }
            }
            Some(_) => {}
        }
    }
}

/// One browser tab: a stream on A; when A ends it, waits the `retry:` it
/// was told and resumes on B from the last id it saw.
async fn tab(
    on_a: User,
    on_b: User,
    seen: Arc<Mutex<Seen>>,
    opened: tokio::sync::mpsc::Sender<()>,
) {
    let response = on_a.connect("").await;
    assert_eq!(response.status(), 200);
    let mut stream = SseStream::new(response);
    let mut last_id = String::new();
    let mut retry = 3000;
    // The preamble: retry, then `connected` (whose id is a resume point).
    while let Some(item) = stream.next_within(Duration::from_secs(5)).await {
        match item {
            Item::Retry(ms) => retry = ms,
            Item::Event { id, name, .. } if name == "connected" => {
                last_id = id.unwrap_or_default();
                break;
            }
            _ => {}
        }
    }
    let _ = opened.send(()).await;
    if !read(&mut stream, &seen, &mut last_id, &mut retry).await {
        return;
    }
    {
        seen.lock().await.ended_at = Some(Instant::now());
        tokio::time::sleep(Duration::from_millis(retry)).await;
        seen.lock().await.reconnected_at = Some(Instant::now());
        let response = on_b
            .client
            .get(on_b.url("/api/sse"))
            .header("accept", "text/event-stream")
            .header("last-event-id", &last_id)
            .send()
            .await
            .expect("GET /api/sse on B");
        assert_eq!(response.status(), 200);
        stream = SseStream::new(response);
        if !read(&mut stream, &seen, &mut last_id, &mut retry).await {
            return;
        }
        panic!("the stream on B ended");
    }
}

#[tokio::test]
async fn sigterm_drains_2000_streams_spread_out_and_nothing_is_missed() {
    sse_notify::server::raise_fd_limit();
    let mut cluster = Cluster::new().await;
    for (k, v) in [
        ("SSE_MAX_CLIENTS", "5000"),
        ("SSE_PER_USER_MAX", "5000"),
        ("SSE_PER_ADDRESS_MAX", "5000"),
        ("SSE_RETRY", "500ms"),
        ("SERVER_DRAIN_DELAY", "1s"),
        ("SERVER_DRAIN_WINDOW", "4s"),
        ("RUST_LOG", "warn"),
    ] {
        cluster.env.push((k.into(), v.into()));
    }
    let mut a = cluster.start("a").await;
    let b = cluster.start("b").await;
    let reader = signup_on(&a.base, "reader").await;
    let sender = signup_on(&b.base, "sender").await;

    let (opened_tx, mut opened) = tokio::sync::mpsc::channel(STREAMS);
    let mut tabs = Vec::new();
    let mut seen = Vec::new();
    for _ in 0..STREAMS {
        let s = Arc::new(Mutex::new(Seen::default()));
        seen.push(s.clone());
        tabs.push(tokio::spawn(tab(
            reader.at(&a.base),
            reader.at(&b.base),
            s,
            opened_tx.clone(),
        )));
    }
    for _ in 0..STREAMS {
        tokio::time::timeout(Duration::from_secs(60), opened.recv())
            .await
            .expect("2000 streams open within 60 s");
    }

    // Ticks every 100 ms from B, before, during and after the drain.
    let send = |user: &User, event: &str, n: u64| {
        let body =
            serde_json::json!({ "user": "reader", "event": event, "message": n.to_string() });
        let user = user.at(&b.base);
        async move {
            let (status, answer) = user.post_json("/api/sse/test", &body.to_string()).await;
            assert_eq!(status, 200, "{answer}");
        }
    };
    let mut sent = 0u64;
    for _ in 0..5 {
        send(&sender, "tick", sent).await;
        sent += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let signalled = Instant::now();
    a.terminate();
    // Not ready as soon as the signal is handled, well before streams end.
    loop {
        let ready = reqwest::get(format!("{}/readyz", a.base)).await.unwrap();
        if ready.status() == 503 {
            let body: serde_json::Value = ready.json().await.unwrap();
            let failing = body["failing"].as_array().unwrap();
            assert!(failing.contains(&"draining".into()), "{body}");
            break;
        }
        assert!(
            signalled.elapsed() < DELAY,
            "/readyz still 200 while draining"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Until every tab is on B, and a little after.
    let everyone_back = DELAY + WINDOW + Duration::from_secs(3);
    while signalled.elapsed() < everyone_back {
        send(&sender, "tick", sent).await;
        sent += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = a.exit_within(Duration::from_secs(10)).await;
    assert!(status.success(), "A exits cleanly: {status:?}");
    send(&sender, "done", sent).await;
    for tab in tabs {
        tokio::time::timeout(Duration::from_secs(30), tab)
            .await
            .expect("every tab reads to the end")
            .expect("tab did not panic");
    }

    let expected: Vec<u64> = (0..sent).collect();
    let mut reconnects = Vec::new();
    for s in &seen {
        let s = s.lock().await;
        assert_eq!(
            s.ticks, expected,
            "every tick once, in order, across the drain"
        );
        assert_eq!(s.resets, 0);
        let ended = s.ended_at.expect("every stream on A was ended");
        let since = ended.duration_since(signalled);
        assert!(
            // (Seen by a test process reading 2 000 streams: some slack.)
            since >= DELAY - Duration::from_millis(100)
                && since <= DELAY + WINDOW + Duration::from_secs(3),
            "ended {since:?} after SIGTERM"
        );
        reconnects.push(
            s.reconnected_at
                .expect("reconnected")
                .duration_since(signalled),
        );
    }
    // Spread: the reconnects take about the window (not one burst), and
    // no second holds more than twice the mean rate of the window.
    reconnects.sort();
    let first = reconnects[0];
    let span = reconnects[STREAMS - 1] - first;
    assert!(span >= WINDOW / 2, "reconnects within {span:?} only");
    let mut per_second = vec![0usize; span.as_secs() as usize + 1];
    for r in &reconnects {
        per_second[(*r - first).as_secs() as usize] += 1;
    }
    let mean = STREAMS as f64 / WINDOW.as_secs_f64();
    let busiest = *per_second.iter().max().unwrap();
    assert!(
        busiest as f64 <= 2.0 * mean,
        "reconnects per second {per_second:?}: busiest {busiest}, mean {mean:.0}"
    );
    println!("drain: reconnects per second {per_second:?}, mean {mean:.0}");
    drop(b);
    cluster.finish().await;
}
