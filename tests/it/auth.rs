//! Accounts, sessions and the identity bound to the event stream, against
//! the real server and a real database. Every test runs twice: on SQLite
//! and on Postgres.

use std::time::Duration;

use crate::support::{Backend, PASSWORD, TestServer};
use serde_json::{Value, json};

/// Sends a form to a server function; returns status, headers and JSON.
async fn form(
    client: &reqwest::Client,
    server: &TestServer,
    path: &str,
    fields: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = client
        .post(server.url(path))
        .form(fields)
        .send()
        .await
        .expect("POST");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, json)
}

fn session_cookie(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("sid="))
        .map(str::to_string)
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or_default().to_string()
}

async fn sign_up_in_out_and_statuses(backend: Backend) {
    let server = TestServer::start_on(backend, &[]).await;
    let browser = server.browser();

    // Sign up → signed in, cookie flags, /home 200.
    let (status, headers, body) = form(
        &browser,
        &server,
        "/api/auth/signup",
        &[
            ("username", "alice"),
            ("password", PASSWORD),
            ("next", "/home"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["username"], "alice");
    assert_eq!(body["isAdmin"], false);
    assert_eq!(
        headers.get("location").and_then(|v| v.to_str().ok()),
        Some("/home")
    );
    let cookie = session_cookie(&headers).expect("session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    assert!(
        !cookie.contains("Secure"),
        "plain http: no Secure flag: {cookie}"
    );
    let home = browser
        .get(server.url("/home"))
        .send()
        .await
        .expect("GET /home");
    assert_eq!(home.status(), 200);
    assert!(home.text().await.expect("body").contains("alice"));

    // Duplicate (any case) → 409; invalid username → 400; short password → 400.
    let anon = server.browser();
    let (status, _, body) = form(
        &anon,
        &server,
        "/api/auth/signup",
        &[("username", "Alice"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("username_taken")),
        "{body}"
    );
    let (status, _, body) = form(
        &anon,
        &server,
        "/api/auth/signup",
        &[("username", "a b"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_username")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("Username"))
    );
    let (status, _, body) = form(
        &anon,
        &server,
        "/api/auth/signup",
        &[("username", "zed"), ("password", "short")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_password")),
        "{body}"
    );
    let (status, _, body) = form(&anon, &server, "/api/auth/signup", &[("username", "zed")]).await;
    assert_eq!(status, 400, "{body}");

    // Wrong password → 401; unknown user → 401 with the same words.
    let (status, _, wrong) = form(
        &anon,
        &server,
        "/api/auth/login",
        &[("username", "alice"), ("password", "not the password")],
    )
    .await;
    assert_eq!(
        (status, wrong["error"].as_str()),
        (401, Some("invalid_credentials"))
    );
    let (status, _, unknown) = form(
        &anon,
        &server,
        "/api/auth/login",
        &[("username", "nobody"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(wrong["message"], unknown["message"]);

    // Sign out → /home redirects, /api/sse is 401, the old cookie is dead.
    let (stream_status, _) = {
        let r = browser
            .get(server.url("/api/sse"))
            .send()
            .await
            .expect("sse");
        (r.status().as_u16(), r)
    };
    assert_eq!(stream_status, 200);
    let (status, _, _) = form(&browser, &server, "/api/auth/logout", &[]).await;
    assert_eq!(status, 200);
    let home = browser
        .get(server.url("/home"))
        .send()
        .await
        .expect("GET /home");
    assert_eq!(home.status(), 303);
    assert_eq!(
        home.headers().get("location").and_then(|v| v.to_str().ok()),
        Some("/login?next=/home")
    );
    let sse = browser
        .get(server.url("/api/sse"))
        .send()
        .await
        .expect("GET /api/sse");
    assert_eq!(sse.status(), 401);
    let body: Value = sse.json().await.expect("JSON");
    assert_eq!(body["error"], "unauthenticated");
    let replay = server
        .browser()
        .get(server.url("/api/sse"))
        .header("cookie", cookie_value(&cookie))
        .send()
        .await
        .expect("GET /api/sse");
    assert_eq!(
        replay.status(),
        401,
        "a signed-out session id must not work again"
    );
    server.shutdown().await.expect("clean shutdown");
}

async fn session_id_rotates_at_sign_in_and_expires(backend: Backend) {
    let server = TestServer::start_on(backend, &[("AUTH_SESSION_TTL", "2s")]).await;
    let first = server.browser();
    let (_, headers, _) = form(
        &first,
        &server,
        "/api/auth/signup",
        &[("username", "bob"), ("password", PASSWORD)],
    )
    .await;
    let before = cookie_value(&session_cookie(&headers).expect("cookie"));
    let (status, headers, _) = form(
        &first,
        &server,
        "/api/auth/login",
        &[("username", "bob"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(status, 200);
    let after = cookie_value(&session_cookie(&headers).expect("new cookie at sign-in"));
    assert_ne!(before, after, "the session id must change at sign-in");
    let old = server
        .browser()
        .get(server.url("/api/sse"))
        .header("cookie", &before)
        .send()
        .await
        .expect("GET");
    assert_eq!(old.status(), 401, "the pre-sign-in id must be dead");

    let fresh = server
        .browser()
        .get(server.url("/api/sse/clients"))
        .header("cookie", &after)
        .send()
        .await
        .expect("GET");
    assert_eq!(fresh.status(), 200);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let expired = server
        .browser()
        .get(server.url("/api/sse"))
        .header("cookie", &after)
        .send()
        .await
        .expect("GET");
    assert_eq!(expired.status(), 401, "an expired session must be refused");
    server.shutdown().await.expect("clean shutdown");
}

async fn events_stay_with_their_user_whatever_the_client_claims(backend: Backend) {
    let server = TestServer::start_on(backend, &[]).await;
    let a = server.signup("anna").await;
    let b = server.signup("ben").await;
    let a_tab2 = server.login("anna").await;
    let (mut a1, _) = a.open("").await;
    let (mut a2, _) = a.open("?tag=page:home").await;
    let (mut a3, _) = a_tab2.open("").await;
    // Forged query parameters: ignored.
    let (mut b1, b1_id) = b.open("?user=anna&userId=anna&role=admin&session=x").await;
    let (mut b2, _) = b.open("").await;

    let listing = b.clients("").await;
    let clients = listing["clients"].as_array().expect("clients");
    assert_eq!(clients.len(), 2, "ben sees only his own clients: {listing}");
    assert!(clients.iter().all(|c| c["username"] == "ben"));
    assert_eq!(
        clients
            .iter()
            .find(|c| c["id"] == b1_id.as_str())
            .expect("b1")["tags"],
        json!(["role:user"])
    );
    assert_eq!(
        listing["stats"]["totalClients"], 5,
        "aggregate counts are shown"
    );
    assert_eq!(
        listing["stats"]["clientsPerUser"],
        json!({}),
        "other users are not named"
    );
    assert_eq!(b.clients("?userId=anna").await["clients"], json!([]));

    // ben sends to anna; forged extra JSON fields change nothing.
    let (status, body) = b
        .post_json(
            "/api/sse/test",
            &json!({"user": "anna", "message": "for anna", "from": "root", "userId": "ben"})
                .to_string(),
        )
        .await;
    assert_eq!((status, &body["delivered"]), (200, &json!(3)));
    for stream in [&mut a1, &mut a2, &mut a3] {
        let (name, data) = stream
            .next_event(Duration::from_secs(2))
            .await
            .expect("anna receives");
        assert_eq!(name, "notification");
        let payload: Value = serde_json::from_str(&data).expect("JSON");
        assert_eq!(payload["message"], "for anna");
        assert_eq!(payload["from"], "ben");
    }
    for stream in [&mut b1, &mut b2] {
        assert_eq!(
            stream.next_event(Duration::from_millis(300)).await,
            None,
            "ben must not receive"
        );
    }

    // Broadcast is admin-only; admins see everything.
    let (status, body) = b
        .post_json("/api/sse/broadcast", r#"{"message":"hi all"}"#)
        .await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));
    let root = server.signup("root").await;
    server.grant_admin("root");
    let listing = root.clients("").await;
    assert_eq!(listing["clients"].as_array().map(Vec::len), Some(5));
    assert_eq!(
        listing["stats"]["clientsPerUser"],
        json!({"anna": 3, "ben": 2})
    );
    let (mut r1, r1_id) = root.open("").await;
    let admin_tags = root.clients(&format!("?clientIds={r1_id}")).await;
    assert_eq!(admin_tags["clients"][0]["tags"], json!(["role:admin"]));
    let (status, body) = root
        .post_json("/api/sse/broadcast", r#"{"message":"hi all"}"#)
        .await;
    assert_eq!((status, &body["delivered"]), (200, &json!(6)));
    for stream in [&mut a1, &mut b1, &mut r1] {
        assert!(
            stream.next_event(Duration::from_secs(2)).await.is_some(),
            "broadcast reaches all"
        );
    }

    // Not signed in: every SSE endpoint says 401.
    let anon = server.browser();
    for path in ["/api/sse", "/api/sse/clients"] {
        let response = anon.get(server.url(path)).send().await.expect("GET");
        assert_eq!(response.status(), 401, "{path}");
    }
    let (status, _, body) = form(&anon, &server, "/api/sse/test", &[]).await;
    assert!(status == 400 || status == 401, "{status} {body}");
    server.shutdown().await.expect("clean shutdown");
}

async fn cross_site_posts_and_brute_force_are_refused(backend: Backend) {
    let server = TestServer::start_on(
        backend,
        &[
            ("AUTH_LOGIN_ATTEMPTS_PER_USER", "3"),
            ("AUTH_LOGIN_ATTEMPTS_PER_IP", "1000"),
        ],
    )
    .await;
    let _carl = server.signup("carl").await;
    let anon = server.browser();

    let cross = anon
        .post(server.url("/api/auth/login"))
        .header("origin", "https://evil.example")
        .form(&[("username", "carl"), ("password", PASSWORD)])
        .send()
        .await
        .expect("POST");
    assert_eq!(cross.status(), 403);
    let body: Value = cross.json().await.expect("JSON");
    assert_eq!(body["error"], "cross_site");
    let same = anon
        .post(server.url("/api/auth/login"))
        .header("origin", server.base.as_str())
        .form(&[("username", "carl"), ("password", PASSWORD)])
        .send()
        .await
        .expect("POST");
    assert_eq!(same.status(), 200, "same-origin posts are fine");
    let fetch_cross = anon
        .post(server.url("/api/auth/logout"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .expect("POST");
    assert_eq!(fetch_cross.status(), 403);

    // Two more attempts for carl are allowed (3 per window), then 429.
    for _ in 0..2 {
        let (status, _, _) = form(
            &anon,
            &server,
            "/api/auth/login",
            &[("username", "carl"), ("password", "wrong password")],
        )
        .await;
        assert_eq!(status, 401);
    }
    let (status, headers, body) = form(
        &anon,
        &server,
        "/api/auth/login",
        &[("username", "CARL"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("too_many_attempts")),
        "{body}"
    );
    assert!(headers.get("retry-after").is_some());
    // Another username is not affected.
    let _dora = server.signup("dora").await;
    let (status, _, _) = form(
        &anon,
        &server,
        "/api/auth/login",
        &[("username", "dora"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(status, 200);
    server.shutdown().await.expect("clean shutdown");
}

async fn secure_flag_behind_https_proxy(backend: Backend) {
    let server = TestServer::start_on(backend, &[]).await;
    let response = server
        .browser()
        .post(server.url("/api/auth/signup"))
        .header("x-forwarded-proto", "https")
        .form(&[("username", "erik"), ("password", PASSWORD)])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 200);
    let cookie = session_cookie(response.headers()).expect("cookie");
    assert!(cookie.contains("; Secure"), "{cookie}");
    server.shutdown().await.expect("clean shutdown");
}

/// The admin role once went to whoever
/// signed up first under a listed name. Now only the operator's command
/// grants it, to an account that exists, and it takes effect at once.
async fn roles_are_granted_by_the_operator_never_by_name(backend: Backend) {
    let server = TestServer::start_on(backend, &[]).await;
    let probe = server.signup("AdminProbe").await;
    let me = |user: &crate::support::User| {
        let request = user.client.post(user.url("/api/auth/me")).send();
        async move {
            let json: Value = request.await.expect("POST me").json().await.expect("JSON");
            json["isAdmin"].as_bool()
        }
    };
    assert_eq!(me(&probe).await, Some(false));
    let (status, _) = probe
        .post_json("/api/sse/broadcast", r#"{"message":"hi"}"#)
        .await;
    assert_eq!(status, 403);

    let missing = server.admin(&["grant", "nobody"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no account named"));
    let usage = server.admin(&["promote", "AdminProbe"]);
    assert_eq!(usage.status.code(), Some(2));

    server.grant_admin("adminprobe");
    assert_eq!(me(&probe).await, Some(true), "granted: at the next request");
    let (status, _) = probe
        .post_json("/api/sse/broadcast", r#"{"message":"hi"}"#)
        .await;
    assert_eq!(status, 200);
    let list = server.admin(&["list"]);
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "AdminProbe");

    let revoke = server.admin(&["revoke", "ADMINPROBE"]);
    assert!(revoke.status.success());
    assert_eq!(
        me(&probe).await,
        Some(false),
        "revoked: at the next request"
    );
    server.shutdown().await.expect("clean shutdown");
}

/// A sign-in name with a line break once wrote a forged log line.
/// Names are checked at sign-in as at sign-up (and logged escaped).
async fn sign_in_names_are_checked_like_sign_up_names(backend: Backend) {
    let server = TestServer::start_on(backend, &[]).await;
    let _bob = server.signup("bob").await;
    let anon = server.browser();
    for name in [
        "bob\nINFO sse_notify: signed in user=root",
        "bo\rb",
        "b\u{0}b",
        "x",
    ] {
        let (status, _, body) = form(
            &anon,
            &server,
            "/api/auth/login",
            &[("username", name), ("password", PASSWORD)],
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_username")),
            "{name:?}: {body}"
        );
    }
    let (status, _, _) = form(
        &anon,
        &server,
        "/api/auth/login",
        &[("username", " bob "), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(status, 200, "surrounding blanks are trimmed, as at sign-up");
    server.shutdown().await.expect("clean shutdown");
}

/// A sign-in in a browser already signed in (as someone else) ends the
/// streams of the sign-in it replaces, as a sign-out does: they carry the
/// previous identity, and tabs sharing one stream would show it.
async fn a_new_sign_in_ends_the_streams_of_the_one_it_replaces(backend: Backend) {
    let server = TestServer::start_on(backend, &[]).await;
    let ivy = server.signup("ivy").await;
    let _jon = server.signup("jon").await;
    let (mut stream, _) = ivy.open("").await;
    let (mut other_tab, _) = ivy.open("?tag=page:other").await;
    let (status, _, body) = form(
        &ivy.client,
        &server,
        "/api/auth/login",
        &[("username", "jon"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(stream.ends_within(Duration::from_secs(5)).await);
    assert!(other_tab.ends_within(Duration::from_secs(5)).await);
    // The same browser's next stream is jon's, and gets jon's events.
    let jon = ivy.now_signed_in_as("jon");
    let (mut stream, _) = jon.open("").await;
    let (status, _) = jon
        .post_json(
            "/api/sse/test",
            r#"{"user":"jon","event":"ping-jon","message":"hi"}"#,
        )
        .await;
    assert_eq!(status, 200);
    let (name, _) = stream
        .next_event(Duration::from_secs(5))
        .await
        .expect("jon's event");
    assert_eq!(name, "ping-jon");
    server.shutdown().await.expect("clean shutdown");
}

/// Signs in as `name` from client address `from`: the test server trusts
/// 127.0.0.1 as its proxy, so `X-Forwarded-For` names the address.
async fn login_from(server: &TestServer, from: &str, name: &str, password: &str) -> (u16, Value) {
    let response = server
        .browser()
        .post(server.url("/api/auth/login"))
        .header("x-forwarded-for", from)
        .form(&[("username", name), ("password", password)])
        .send()
        .await
        .expect("POST /api/auth/login");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// 11 wrong passwords for a name
/// from one address used to lock its owner out everywhere. Now the count is per
/// name *and* address: the guesser's address is refused, the owner's is not.
async fn wrong_passwords_from_elsewhere_never_lock_the_owner_out(backend: Backend) {
    let server = TestServer::start_on(backend, &[("SERVER_TRUSTED_PROXIES", "127.0.0.1")]).await;
    server.signup("vera").await;
    let guesser = "198.51.100.1";
    for i in 0..10 {
        let (status, body) = login_from(&server, guesser, "vera", "wrong password").await;
        assert_eq!(status, 401, "guess {i}: {body}");
    }
    let (status, body) = login_from(&server, guesser, "vera", "wrong password").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("too_many_attempts")),
        "the 11th guess from one address: {body}"
    );
    let (status, body) = login_from(&server, "203.0.113.7", "vera", PASSWORD).await;
    assert_eq!(status, 200, "the owner, from another address: {body}");
    // The guesser's address stays refused for that name, even with the
    // right password.
    let (status, body) = login_from(&server, guesser, "VERA", PASSWORD).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("too_many_attempts")),
        "{body}"
    );
    server.shutdown().await.expect("clean shutdown");
}

/// The same, distributed: many addresses guessing one name slow its
/// sign-ins down but never refuse the owner at a fresh address.
async fn many_addresses_hammering_one_name_only_slow_it_down(backend: Backend) {
    let server = TestServer::start_on(backend, &[("SERVER_TRUSTED_PROXIES", "127.0.0.1")]).await;
    server.signup("wanda").await;
    let shared = &server;
    let guesses = (0..20).map(|a| async move {
        let from = format!("198.51.100.{}", a + 10);
        let mut statuses = Vec::new();
        for _ in 0..5 {
            statuses.push(login_from(shared, &from, "wanda", "wrong password").await.0);
        }
        statuses
    });
    let statuses: Vec<u16> = futures::future::join_all(guesses)
        .await
        .into_iter()
        .flatten()
        .collect();
    let started = std::time::Instant::now();
    let (status, body) = login_from(&server, "203.0.113.8", "wanda", PASSWORD).await;
    assert_eq!(status, 200, "the owner, from a new address: {body}");
    // Five guesses per address stay within that address's own limits.
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "a name under attack is slowed down: {:?}",
        started.elapsed()
    );
    server.shutdown().await.expect("clean shutdown");
}

/// Once an account used up its
/// sends, an unknown name answered 400 `unknown_user` and a known one 429,
/// so the exhausted account could still tell which names exist.
async fn an_exhausted_sender_cannot_tell_names_apart(backend: Backend) {
    let server = TestServer::start_on(backend, &[("SERVER_SENDS_PER_USER", "2")]).await;
    let eve = server.signup("eve").await;
    server.signup("alice").await;
    for i in 0..2 {
        let body = format!(r#"{{"user":"alice","event":"ping","message":"{i}"}}"#);
        let (status, json) = eve.post_json("/api/sse/test", &body).await;
        assert_eq!(status, 200, "{json}");
    }
    for to in ["alice", "nobody-by-this-name"] {
        let body = format!(r#"{{"user":"{to}","event":"ping","message":"probe"}}"#);
        let (status, json) = eve.post_json("/api/sse/test", &body).await;
        assert_eq!(
            (status, json["error"].as_str()),
            (429, Some("send_rate")),
            "a send to {to:?}: {json}"
        );
    }
    server.shutdown().await.expect("clean shutdown");
}

macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await;
                }
            )*
        }
    };
}

on_both_databases!(
    sign_up_in_out_and_statuses,
    session_id_rotates_at_sign_in_and_expires,
    events_stay_with_their_user_whatever_the_client_claims,
    cross_site_posts_and_brute_force_are_refused,
    secure_flag_behind_https_proxy,
    roles_are_granted_by_the_operator_never_by_name,
    sign_in_names_are_checked_like_sign_up_names,
    a_new_sign_in_ends_the_streams_of_the_one_it_replaces,
    wrong_passwords_from_elsewhere_never_lock_the_owner_out,
    many_addresses_hammering_one_name_only_slow_it_down,
    an_exhausted_sender_cannot_tell_names_apart,
);
