//! Across processes: `sse_notify admin revoke|grant`
//! run as its own process reaches a stream open on another server process
//! than the one the sender uses, within a second (see `crate::roles`).

use std::process::Command;
use std::time::Instant;

use serde_json::json;

use super::Cluster;
use crate::roles::{broadcast, ends_soon, next_message};
use crate::support::signup_on;

impl Cluster {
    /// `sse_notify admin <verb> <name>` against the cluster's database.
    fn admin(&self, verb: &str, name: &str) {
        let out = Command::new(env!("CARGO_BIN_EXE_sse_notify"))
            .args(["admin", verb, name])
            .env("DATABASE_URL", &self.db_url)
            .env("DATA_DIR", std::env::temp_dir())
            .env("CONFIG_FILE", "/dev/null")
            .output()
            .expect("run admin");
        assert!(
            out.status.success(),
            "admin {verb} {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn revoke_and_grant_reach_a_stream_on_another_process_within_a_second() {
    let cluster = Cluster::new().await;
    let a = cluster.start("a").await;
    let b = cluster.start("b").await;
    let boss = signup_on(&a.base, "clboss").await;
    cluster.grant_admin("clboss");
    let ann = signup_on(&a.base, "clann").await;
    cluster.grant_admin("clann");
    let ann_b = b.as_user(&ann);

    // ann's stream is on B; the admin event is sent through A.
    let (mut stream, _) = ann_b.open("").await;
    broadcast(&boss, "admins: one", Some("role:admin")).await;
    let (message, last_id) = next_message(&mut stream).await;
    assert_eq!(message, "admins: one");

    cluster.admin("revoke", "clann");
    ends_soon(&mut stream, Instant::now(), "admin revoke").await;
    broadcast(&boss, "admins: missed", Some("role:admin")).await;
    let (mut resumed, id) = ann_b.resume("", &last_id).await;
    let listing = ann_b.clients(&format!("?clientIds={id}")).await;
    assert_eq!(listing["clients"][0]["tags"], json!(["role:user"]));
    broadcast(&boss, "everyone", None).await;
    let (message, last_id) = next_message(&mut resumed).await;
    assert_eq!(
        message, "everyone",
        "no admin event reaches a revoked admin"
    );

    cluster.admin("grant", "clann");
    ends_soon(&mut resumed, Instant::now(), "admin grant").await;
    broadcast(&boss, "admins: back", Some("role:admin")).await;
    let (mut again, _) = ann_b.resume("", &last_id).await;
    assert_eq!(next_message(&mut again).await.0, "admins: back");

    drop((a, b));
    cluster.finish().await;
}
