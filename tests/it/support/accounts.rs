//! Accounts and signed-in browsers on a test server.

use std::time::Duration;

use super::*;

/// A password every test account uses.
pub const PASSWORD: &str = "correct horse battery";

/// A client that keeps cookies, not signed in (see [`TestServer::browser`]).
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Creates an account on the server at `base` without a cookie store;
/// returns its session cookie (`name=value`), for raw requests.
pub async fn signup_cookie(base: &str, name: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("{base}/api/auth/signup"))
        .form(&[("username", name), ("password", PASSWORD)])
        .send()
        .await
        .expect("POST /api/auth/signup");
    assert_eq!(response.status(), 200, "signup {name}");
    sid_cookie(response.headers()).expect("session cookie")
}

/// The session cookie (`sid=…`) a response sets, as a request sends it.
pub fn sid_cookie(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("sid="))
        .and_then(|v| v.split(';').next())
        .map(str::to_string)
}

/// Creates an account on the server at `base`; returns its signed-in
/// client.
pub async fn signup_on(base: &str, name: &str) -> User {
    signed_in(base, "signup", name).await
}

/// Signs in an existing account on the server at `base`, in a new
/// browser.
pub async fn login_on(base: &str, name: &str) -> User {
    signed_in(base, "login", name).await
}

async fn signed_in(base: &str, action: &str, name: &str) -> User {
    let client = browser();
    let response = client
        .post(format!("{base}/api/auth/{action}"))
        .form(&[("username", name), ("password", PASSWORD)])
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST /api/auth/{action}: {e}"));
    assert_eq!(
        response.status(),
        200,
        "{action} {name}: {:?}",
        response.text().await
    );
    User {
        name: name.to_string(),
        client,
        base: base.to_string(),
    }
}

/// A signed-in browser.
#[derive(Clone)]
pub struct User {
    pub name: String,
    pub client: reqwest::Client,
    base: String,
}

impl User {
    /// The same browser (its cookies, its session) talking to the server
    /// at `base`: cookies belong to the host, not to the port.
    pub fn at(&self, base: &str) -> User {
        User {
            name: self.name.clone(),
            client: self.client.clone(),
            base: base.to_string(),
        }
    }

    /// This same browser after it signed in as `name`.
    pub fn now_signed_in_as(&self, name: &str) -> User {
        User {
            name: name.to_string(),
            client: self.client.clone(),
            base: self.base.clone(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET /api/sse{query}` with this user's cookies.
    pub async fn connect(&self, query: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/api/sse{query}")))
            .header("accept", "text/event-stream")
            .send()
            .await
            .expect("GET /api/sse")
    }

    /// Opens a stream and reads up to its `connected` event; returns the
    /// stream and the client id.
    /// Opens a stream and reads up to its `connected` event only.
    pub async fn open_raw(&self, query: &str) -> (SseStream, String) {
        let response = self.connect(query).await;
        Self::opened(&self.name, response).await
    }

    /// A fresh stream also starts with the inbox backlog, which is read
    /// here too (see [`SseStream::backlog`]).
    pub async fn open(&self, query: &str) -> (SseStream, String) {
        let response = self.connect(query).await;
        let (mut stream, id) = Self::opened(&self.name, response).await;
        if !query.contains("lastEventId=") {
            stream.take_backlog().await;
        }
        (stream, id)
    }

    /// Opens a stream resuming after `last_event_id` (sent as the
    /// `Last-Event-ID` header, as a browser does when it reconnects).
    pub async fn resume(&self, query: &str, last_event_id: &str) -> (SseStream, String) {
        let response = self
            .client
            .get(self.url(&format!("/api/sse{query}")))
            .header("accept", "text/event-stream")
            .header("last-event-id", last_event_id)
            .send()
            .await
            .expect("GET /api/sse");
        Self::opened(&self.name, response).await
    }

    async fn opened(name: &str, response: reqwest::Response) -> (SseStream, String) {
        let self_name = name;
        assert_eq!(response.status(), 200, "GET /api/sse as {self_name}");
        let mut stream = SseStream::new(response);
        assert_eq!(
            stream.next_within(Duration::from_secs(2)).await,
            Some(Item::Retry(3000))
        );
        let (name, data) = stream
            .next_event(Duration::from_secs(2))
            .await
            .expect("connected event");
        assert_eq!(name, "connected");
        let json: serde_json::Value = serde_json::from_str(&data).expect("connected is JSON");
        let id = json["clientId"].as_str().expect("clientId").to_string();
        (stream, id)
    }

    /// POSTs a JSON body; returns the status and the JSON answer.
    pub async fn post_json(&self, path: &str, body: &str) -> (u16, serde_json::Value) {
        let response = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("POST");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
        (status, json)
    }

    /// `GET /api/sse/clients{query}` as JSON.
    pub async fn clients(&self, query: &str) -> serde_json::Value {
        self.client
            .get(self.url(&format!("/api/sse/clients{query}")))
            .send()
            .await
            .expect("GET /api/sse/clients")
            .json()
            .await
            .expect("JSON")
    }
}
