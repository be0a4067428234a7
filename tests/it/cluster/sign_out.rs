//! A stream request still on its way when its sign-in ends is refused:
//! it never registers to stream on behalf of a session that is gone.

use std::time::Duration;

use super::OwnRedis;
use crate::support::TestServer;

#[tokio::test]
async fn a_stream_waiting_for_the_bus_when_its_session_signs_out_is_refused() {
    // Redis is not up yet: a stream request of a process that just
    // started waits (up to `bus.timeout`) for the bus's first read.
    let mut own = OwnRedis::not_started();
    let url = own.url();
    let server = TestServer::start(&[
        ("BUS_URL", url.as_str()),
        ("BUS_TIMEOUT", "20s"),
        ("BUS_PREFIX", "sign-out"),
    ])
    .await;
    let ann = server.signup("anns").await;
    let waiting = {
        let ann = ann.at(&server.base);
        tokio::spawn(async move { ann.connect("").await })
    };
    // The request has read its identity and is waiting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "the request should still wait");
    let signed_out = ann
        .client
        .post(server.url("/api/auth/logout"))
        .send()
        .await
        .expect("POST logout");
    assert!(signed_out.status().is_success() || signed_out.status().is_redirection());
    // The bus comes up: the wait ends, the request goes on to register.
    own.restart().await;
    let response = tokio::time::timeout(Duration::from_secs(25), waiting)
        .await
        .expect("answered")
        .expect("task");
    assert_eq!(response.status(), 401, "a stream for a session that ended");
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["error"], "session_ended");
}
