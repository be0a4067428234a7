//! Who a resume may replay to: exactly the identity the stream was
//! granted, on every path (the history, and with the Redis bus the part
//! older than the history, read from the stream), never from before the
//! sign-in began. The SSE layer is mounted in a plain axum app whose
//! identity comes from request headers, so every target kind (user,
//! session, client, tag, everyone) can be sent straight through the
//! `Notifier`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{Next, from_fn};
use axum::response::Response;
use sse_notify::sse::{
    BusConfig, ClientId, Identity, Notifier, SessionId, SseConfig, Tag, Target, UserId,
};
use tokio::net::TcpListener;

use crate::support::{Item, SseStream};

/// The caller's identity from `x-user`, `x-session` and `x-since`
/// headers (a real app reads its session here).
async fn identify(mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (user, session) = (header("x-user"), header("x-session"));
    let since: Option<u64> = header("x-since").and_then(|s| s.parse().ok());
    if let (Some(user), Some(session)) = (user, session) {
        request.extensions_mut().insert(Identity {
            user: UserId::new(user.clone()),
            username: user,
            session: SessionId::new(session),
            tags: vec![Tag::new("role", "user").expect("tag")],
            since,
        });
    }
    next.run(request).await
}

/// The SSE layer alone, with the Redis bus when `bus` names a prefix.
async fn app(config: SseConfig, bus: Option<&str>) -> (String, Notifier) {
    app_on(config, bus, &crate::cluster::redis_url()).await
}

/// [`app`] with the bus on the Redis at `redis_url`.
pub(crate) async fn app_on(
    config: SseConfig,
    bus: Option<&str>,
    redis_url: &str,
) -> (String, Notifier) {
    let bus_config = match bus {
        Some(prefix) => BusConfig {
            url: redis_url.to_string(),
            prefix: prefix.to_string(),
            ..BusConfig::default()
        },
        None => BusConfig::default(),
    };
    let notifier = Notifier::start(config, &bus_config).expect("notifier");
    let app: Router = sse_notify::sse::routes::<Notifier>()
        .layer(from_fn(identify))
        .with_state(notifier.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        let _ = axum::serve(listener, service).await;
    });
    if bus.is_some() {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !notifier.bus_status().connected {
            assert!(tokio::time::Instant::now() < deadline, "bus not connected");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    (format!("http://{addr}"), notifier)
}

/// One tab: who it is, and where it stood when it went away.
#[derive(Clone)]
pub(crate) struct Tab {
    pub(crate) user: &'static str,
    pub(crate) session: &'static str,
    pub(crate) page: &'static str,
    pub(crate) client: String,
    pub(crate) last: String,
}

impl Tab {
    pub(crate) fn new(user: &'static str) -> Self {
        Tab {
            user,
            session: user,
            page: "page:a",
            client: String::new(),
            last: String::new(),
        }
    }
}

pub(crate) async fn get(
    base: &str,
    tab: &Tab,
    query: &str,
    last_event_id: Option<&str>,
    since: Option<u64>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .get(format!("{base}/api/sse?tag={}{query}", tab.page))
        .header("accept", "text/event-stream")
        .header("x-user", tab.user)
        .header("x-session", tab.session);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    if let Some(since) = since {
        request = request.header("x-since", since.to_string());
    }
    request.send().await.expect("GET /api/sse")
}

/// Reads the preamble; returns the stream, the client id and the
/// `connected` event's id.
pub(crate) async fn opened(response: reqwest::Response) -> (SseStream, String, String) {
    assert_eq!(response.status(), 200);
    let mut stream = SseStream::new(response);
    assert!(matches!(
        stream.next_within(Duration::from_secs(2)).await,
        Some(Item::Retry(_))
    ));
    let (id, name, data) = stream
        .next_with_id(Duration::from_secs(2))
        .await
        .expect("connected");
    assert_eq!(name, "connected");
    let json: serde_json::Value = serde_json::from_str(&data).expect("JSON");
    let client = json["clientId"].as_str().expect("clientId").to_string();
    (stream, client, id)
}

/// Every event until a quiet half second: `(name, data)`.
pub(crate) async fn drain(stream: &mut SseStream) -> Vec<(String, String)> {
    let mut got = Vec::new();
    while let Some((_, name, data)) = stream.next_with_id(Duration::from_millis(500)).await {
        got.push((name, data));
    }
    got
}

/// The labels of every `m` event until the stream is quiet (any other
/// event fails the test).
async fn labels(stream: &mut SseStream) -> Vec<String> {
    drain(stream)
        .await
        .into_iter()
        .map(|(name, data)| {
            assert_eq!(name, "m", "{data}");
            serde_json::from_str(&data).expect("JSON label")
        })
        .collect()
}

/// One send of the matrix: its label and its target.
fn sends(tabs: &[Tab]) -> Vec<(String, Target)> {
    let mut out = vec![
        ("user ann".to_string(), Target::user(UserId::new("ann"))),
        ("user bob".to_string(), Target::user(UserId::new("bob"))),
        (
            "session ann-1".to_string(),
            Target::session(SessionId::new("ann-1")),
        ),
        (
            "session bob-2".to_string(),
            Target::session(SessionId::new("bob-2")),
        ),
        ("tag page:a".to_string(), Target::tag("page", "a")),
        ("tag page:c".to_string(), Target::tag("page", "c")),
        ("everyone".to_string(), Target::all()),
    ];
    for (n, tab) in tabs.iter().enumerate() {
        let id = ClientId::parse(&tab.client).expect("client id");
        out.insert(2 + n, (format!("client {n}"), Target::clients([id])));
    }
    out
}

/// What a tab with this identity (and `client` as its granted id) should
/// be replayed, in send order.
fn expected(tab: &Tab, client: &str, sends: &[(String, Target)], tabs: &[Tab]) -> Vec<String> {
    sends
        .iter()
        .filter(|(label, _)| {
            let (kind, what) = label.split_once(" ").unwrap_or((label, ""));
            match kind {
                "user" => what == tab.user,
                "session" => what == tab.session,
                "client" => {
                    let n: usize = what.parse().expect("tab number");
                    tabs[n].client == client
                }
                "tag" => what == format!("page:{}", &tab.page[5..]),
                _ => true,
            }
        })
        .map(|(label, _)| label.clone())
        .collect()
}

/// 2 users × 3 tabs (two sessions each, a page tag each); every target
/// kind sent while they are away; each tab resumes with its own client
/// id and gets exactly its events; a tab claiming another user's client
/// id is refused the claim and gets none of that client's events. With
/// the bus, the history holds only the last 4 events (the stream all of
/// them), so most come from the Redis stream (the older part).
async fn matrix(bus: bool) {
    let mut config = SseConfig::default();
    if bus {
        config.history_len = 4;
    }
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let (base, notifier) = app(config, bus.then_some(prefix.as_str())).await;

    let mut tabs = Vec::new();
    for (user, sessions) in [
        ("ann", ["ann-1", "ann-1", "ann-2"]),
        ("bob", ["bob-1", "bob-1", "bob-2"]),
    ] {
        for (session, page) in sessions.into_iter().zip(["page:a", "page:b", "page:c"]) {
            let mut tab = Tab {
                user,
                session,
                page,
                client: String::new(),
                last: String::new(),
            };
            let (stream, client, last) = opened(get(&base, &tab, "", None, None).await).await;
            tab.client = client;
            tab.last = last;
            tabs.push((tab, stream));
        }
    }
    let tabs: Vec<Tab> = tabs.into_iter().map(|(tab, _)| tab).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !notifier.registry().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "streams still open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let sends = sends(&tabs);
    for (label, target) in &sends {
        notifier.send_json(target, "m", label).expect("send");
    }
    if bus {
        // Every send read back from the stream into the history.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    for tab in &tabs {
        let query = format!("&client={}", tab.client);
        let response = get(&base, tab, &query, Some(&tab.last), None).await;
        let (mut stream, client, _) = opened(response).await;
        assert_eq!(client, tab.client, "the tab's own id is given back");
        let got = labels(&mut stream).await;
        let want = expected(tab, &tab.client, &sends, &tabs);
        assert_eq!(got, want, "{} {} {}", tab.user, tab.session, tab.page);
    }

    // Bob's tabs claim each of ann's client ids: refused, nothing of it.
    for (victim, thief) in tabs[..3].iter().zip(&tabs[3..]) {
        let query = format!("&client={}", victim.client);
        let response = get(&base, thief, &query, Some(&thief.last), None).await;
        let (mut stream, client, _) = opened(response).await;
        assert_ne!(
            client, victim.client,
            "another user's client id is not given"
        );
        let got = labels(&mut stream).await;
        let want = expected(thief, &client, &sends, &tabs);
        assert_eq!(got, want, "{} claiming {}", thief.user, victim.client);
    }
    notifier.bus().stop();
}

#[tokio::test]
async fn a_resume_replays_exactly_the_granted_identity_from_the_history() {
    matrix(false).await;
}

#[tokio::test]
async fn a_resume_replays_exactly_the_granted_identity_from_the_bus_stream() {
    matrix(true).await;
}

/// A sign-in that began after some events never has them replayed, on
/// either path: a resume from before it is answered with `sse-reset`.
async fn never_before_the_sign_in(bus: bool) {
    let mut config = SseConfig::default();
    if bus {
        config.history_age = Duration::from_secs(1);
    }
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let (base, notifier) = app(config, bus.then_some(prefix.as_str())).await;
    let old = Tab {
        user: "old",
        session: "old-1",
        page: "page:a",
        client: String::new(),
        last: String::new(),
    };
    let (stream, _, first) = opened(get(&base, &old, "", None, None).await).await;
    drop(stream);
    for n in 0..3 {
        notifier
            .send_json(&Target::all(), "m", &format!("before {n}"))
            .expect("send");
    }
    if bus {
        tokio::time::sleep(Duration::from_millis(1600)).await;
    } else {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let since = sse_notify::sse::unix_millis_now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    notifier
        .send_json(&Target::all(), "m", &"after")
        .expect("send");
    let newcomer = Tab {
        user: "new",
        session: "new-1",
        ..old.clone()
    };
    let (mut stream, _, _) =
        opened(get(&base, &newcomer, "", Some(&first), Some(since)).await).await;
    let got = drain(&mut stream).await;
    assert_eq!(got[0].0, "sse-reset", "{got:?}");
    assert!(got[0].1.contains("too_old"), "{got:?}");
    // After the reset, at most what was sent since the sign-in (the
    // stream is complete from the reset's `since` on).
    assert!(
        got[1..].is_empty() || got[1..] == [("m".to_string(), r#""after""#.to_string())],
        "{got:?}"
    );

    // The same resume for a sign-in older than the events replays them.
    let (mut stream, _, _) = opened(get(&base, &old, "", Some(&first), Some(1)).await).await;
    let got = drain(&mut stream).await;
    let data: Vec<&str> = got.iter().map(|(_, data)| data.as_str()).collect();
    assert_eq!(
        data,
        [
            r#""before 0""#,
            r#""before 1""#,
            r#""before 2""#,
            r#""after""#
        ]
    );
    notifier.bus().stop();
}

#[tokio::test]
async fn a_resume_never_reaches_before_the_sign_in_from_the_history() {
    never_before_the_sign_in(false).await;
}

#[tokio::test]
async fn a_resume_never_reaches_before_the_sign_in_from_the_bus_stream() {
    never_before_the_sign_in(true).await;
}
