//! A partitioned bus over two Redis shards: `bus.partitions = 8` and
//! `bus.url` listing two `redis-server`s the test starts. A user's events
//! live in the user's partition, wide ones in every partition; a process
//! reads only the partitions its streams stand in (counted by its own
//! figures, by the streams' lengths and by Redis's subscriber counts);
//! every target kind arrives once; a client of a killed process resumes
//! on another exactly; one shard restarted resets only its clients.

use std::time::Duration;

use serde_json::json;
use sse_notify::sse::partition::{Partitions, shard_of};
use sse_notify::sse::{BusConfig, UserId};

use super::{Cluster, Instance, OwnRedis, redis_at, ticks_until, user_id};
use crate::support::{SseStream, User, publish, signup_on};

const PARTITIONS: u16 = 8;
const TOKEN: &str = "shards";

fn partitions() -> Partitions {
    Partitions::new(PARTITIONS).expect("a valid count")
}

/// Two shards, each holding at least one partition (placement hangs on
/// the ports, so a pair that puts every partition on one is not used);
/// the first is the one that keeps the cluster's shared state.
async fn two_shards() -> [OwnRedis; 2] {
    loop {
        let (mut first, mut second) = (OwnRedis::not_started(), OwnRedis::not_started());
        let listed = BusConfig {
            url: format!("{},{}", first.url(), second.url()),
            ..BusConfig::default()
        };
        if listed.primary_url() != first.url() {
            std::mem::swap(&mut first, &mut second);
        }
        let urls = [first.url(), second.url()];
        let refs = [urls[0].as_str(), urls[1].as_str()];
        let on_first = (0..partitions().count())
            .filter(|p| shard_of(&refs, *p) == refs[0])
            .count();
        if on_first > 0 && on_first < partitions().count() {
            first.restart().await;
            second.restart().await;
            return [first, second];
        }
    }
}

/// A cluster on both shards (the first also keeps the shared state).
async fn sharded(shards: &[OwnRedis; 2]) -> Cluster {
    let mut cluster = Cluster::on(&shards[0].url()).await;
    cluster.redis_url = format!("{},{}", shards[0].url(), shards[1].url());
    for (key, value) in [
        ("BUS_PARTITIONS", PARTITIONS.to_string()),
        ("METRICS_TOKEN", TOKEN.to_string()),
        ("BUS_UNFOLLOW_AFTER", "1s".to_string()),
    ] {
        cluster.env.push((key.to_string(), value));
    }
    cluster
}

/// A user whose partition lives on each shard: `(user, id, partition)`.
async fn one_user_per_shard(
    cluster: &Cluster,
    on: &Instance,
    shards: &[OwnRedis; 2],
) -> [(User, String, usize); 2] {
    let urls = [shards[0].url(), shards[1].url()];
    let refs = [urls[0].as_str(), urls[1].as_str()];
    let mut found: [Option<(User, String, usize)>; 2] = [None, None];
    for n in 0..64 {
        let name = format!("user{n}");
        let user = signup_on(&on.base, &name).await;
        let id = user_id(&cluster.db_url, &name).await;
        let partition = partitions().of(&UserId::new(id.as_str()));
        let shard = usize::from(shard_of(&refs, partition) != refs[0]);
        if found[shard].is_none() {
            found[shard] = Some((user, id, partition));
        }
        if let [Some(_), Some(_)] = &found {
            break;
        }
    }
    let [Some(first), Some(second)] = found else {
        panic!("64 users and none on one shard");
    };
    [first, second]
}

/// The partition's keys' hash tag.
fn tag(cluster: &Cluster, partition: usize) -> String {
    format!("{{{}:{partition}}}", cluster.prefix)
}

fn shard_url(shards: &[String; 2], partition: usize) -> &str {
    shard_of(&[shards[0].as_str(), shards[1].as_str()], partition)
}

/// Subscribers of a partition's wide channel: the processes following it.
async fn followers(cluster: &Cluster, urls: &[String; 2], partition: usize) -> i64 {
    let mut conn = redis_at(shard_url(urls, partition)).await;
    let channel = format!("{}:w", tag(cluster, partition));
    let (_, n): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(&channel)
        .query_async(&mut conn)
        .await
        .expect("PUBSUB NUMSUB");
    n
}

/// Entries in a partition's stream.
async fn entries(cluster: &Cluster, urls: &[String; 2], partition: usize) -> u64 {
    let mut conn = redis_at(shard_url(urls, partition)).await;
    redis::cmd("XLEN")
        .arg(format!("{}:stream", tag(cluster, partition)))
        .query_async(&mut conn)
        .await
        .expect("XLEN")
}

async fn entries_read(instance: &Instance) -> f64 {
    crate::support::metrics(&instance.base, TOKEN).await["sse_bus_entries_read_total"]
}

/// What `/readyz` of `instance` answers.
async fn readyz(instance: &Instance) -> u16 {
    let url = format!("{}/readyz", instance.base);
    reqwest::get(url)
        .await
        .expect("GET /readyz")
        .status()
        .as_u16()
}

/// Whether `check` holds within `tries` looks, `pause` apart.
async fn within<F, Fut>(tries: usize, pause: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..tries {
        if check().await {
            return true;
        }
        tokio::time::sleep(pause).await;
    }
    false
}

/// Publishes `{"message": label}` as a `tick` to `target` through `via`.
async fn tick(via: &Instance, secret: &str, target: serde_json::Value, label: &str) {
    let body = json!({"target": target, "event": "tick", "data": {"message": label}});
    let (status, json) = publish(&via.base, secret, &body.to_string()).await;
    assert_eq!(status, 200, "publish {label}: {json}");
}

/// The `tick` labels until the stream is quiet for `quiet`; an
/// `sse-reset` is returned as `"reset"`.
async fn labels(stream: &mut SseStream, quiet: Duration) -> Vec<String> {
    let mut got = Vec::new();
    while let Some((_, name, data)) = stream.next_with_id(quiet).await {
        match name.as_str() {
            "tick" => {
                let json: serde_json::Value = serde_json::from_str(&data).expect("JSON");
                got.push(json["message"].as_str().expect("message").to_string());
            }
            "sse-reset" => got.push("reset".to_string()),
            _ => {}
        }
    }
    got
}

/// The session of the stream `client` of `user` on `on`, as the listing
/// shows it.
async fn session_of(user: &User, on: &Instance, client: &str) -> String {
    let response = user
        .client
        .get(on.as_user(user).url("/api/sse/clients"))
        .send()
        .await
        .expect("GET /api/sse/clients");
    assert_eq!(response.status(), 200);
    let json: serde_json::Value = response.json().await.expect("JSON");
    json["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .find(|c| c["id"] == client)
        .and_then(|c| c["session"].as_str())
        .expect("the stream in the listing")
        .to_string()
}

#[tokio::test]
async fn three_processes_on_two_shards_deliver_every_target_kind_once_and_read_only_their_partitions()
 {
    let shards = two_shards().await;
    let urls = [shards[0].url(), shards[1].url()];
    let cluster = sharded(&shards).await;
    let a = cluster.start("a").await;
    let b = cluster.start("b").await;
    let c = cluster.start("c").await;
    let secret = cluster.create_token("pub", "publish");
    let [(ann, ann_id, pa), (bob, bob_id, pb)] = one_user_per_shard(&cluster, &a, &shards).await;
    assert_ne!(pa, pb);

    let (mut ann_home, home_client) = ann.open("?tag=page:home").await;
    let (mut ann_plain, _) = ann.open("").await;
    let bob = bob.at(&b.base);
    let (mut bob_plain, _) = bob.open("").await;
    let session = session_of(&ann, &a, &home_client).await;
    let read_before = [
        entries_read(&a).await,
        entries_read(&b).await,
        entries_read(&c).await,
    ];
    let appended_before = [
        entries(&cluster, &urls, pa).await,
        entries(&cluster, &urls, pb).await,
    ];

    // Through C, which holds no stream at all.
    tick(&c, &secret, json!({"user": ann_id}), "user-ann").await;
    tick(&c, &secret, json!({"user": bob_id}), "user-bob").await;
    tick(&c, &secret, json!({"clients": [home_client]}), "client").await;
    tick(&c, &secret, json!({"channel": "page:home"}), "tag").await;
    tick(&c, &secret, json!({"session": session}), "session").await;
    tick(&c, &secret, json!("everyone"), "everyone").await;
    tick(&c, &secret, json!({"users": [ann_id, bob_id]}), "users").await;

    let quiet = Duration::from_millis(1500);
    assert_eq!(
        labels(&mut ann_home, quiet).await,
        ["user-ann", "client", "tag", "session", "everyone", "users"]
    );
    assert_eq!(
        labels(&mut ann_plain, quiet).await,
        ["user-ann", "session", "everyone", "users"]
    );
    let bob_got = ticks_until(&mut bob_plain, "users").await;
    let bob_labels: Vec<&str> = bob_got.iter().map(|(_, label)| label.as_str()).collect();
    assert_eq!(bob_labels, ["user-bob", "everyone", "users"]);
    assert!(
        labels(&mut bob_plain, quiet).await.is_empty(),
        "more for bob"
    );

    // Stored notifications (the inbox, one database): to ann, and to
    // everyone; each once, its id naming its inbox row.
    for (target, label) in [
        (json!({"user": ann_id}), "stored-ann"),
        (json!("everyone"), "stored-all"),
    ] {
        let body = json!({"target": target, "event": "tick", "data": {"message": label}, "persistent": true});
        let (status, json) = publish(&c.base, &secret, &body.to_string()).await;
        assert_eq!(status, 200, "{json}");
    }
    let stored = ticks_until(&mut ann_plain, "stored-all").await;
    let stored_labels: Vec<&str> = stored.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(stored_labels, ["stored-ann", "stored-all"]);
    assert!(stored.iter().all(|(id, _)| id.contains(':')), "{stored:?}");
    let stored = ticks_until(&mut bob_plain, "stored-all").await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    let bob_last = stored[0].0.clone();
    assert_eq!(
        labels(&mut ann_home, quiet).await,
        ["stored-ann", "stored-all"]
    );

    // Each process read its streams' partition and nothing else: A all of
    // ann's partition, B all of bob's, C (no stream) nothing; the other
    // partitions are followed by nobody.
    let read = [
        entries_read(&a).await - read_before[0],
        entries_read(&b).await - read_before[1],
        entries_read(&c).await - read_before[2],
    ];
    let in_pa = (entries(&cluster, &urls, pa).await - appended_before[0]) as f64;
    let in_pb = (entries(&cluster, &urls, pb).await - appended_before[1]) as f64;
    assert!(in_pa >= 6.0 && in_pb >= 3.0, "{in_pa} {in_pb}");
    assert_eq!(read, [in_pa, in_pb, 0.0], "entries read by A, B, C");
    for partition in 0..partitions().count() {
        let expected = i64::from(partition == pa || partition == pb);
        assert_eq!(
            followers(&cluster, &urls, partition).await,
            expected,
            "processes following partition {partition}"
        );
    }

    // Another user's id, or a made-up one, resumes nothing of ann's: ids
    // of ann's partition are not positions in bob's.
    tick(&c, &secret, json!({"user": ann_id}), "ann-secret").await;
    let ann_last = ticks_until(&mut ann_plain, "ann-secret")
        .await
        .last()
        .expect("one")
        .0
        .clone();
    for (on, id) in [
        (&b, ann_last.clone()),
        (&c, ann_last.clone()),
        (&b, "00000000000000aa-99999999999999-0".to_string()),
    ] {
        let (mut resumed, _) = bob.at(&on.base).resume("", &id).await;
        // A reset, then (a fresh start) his own unread stored ones:
        // never anything of ann's.
        let got = labels(&mut resumed, Duration::from_millis(800)).await;
        assert_eq!(
            got.first().map(String::as_str),
            Some("reset"),
            "bob resuming on {} with {id}: {got:?}",
            on.name
        );
        assert!(
            got[1..].iter().all(|label| label == "stored-all"),
            "bob resuming on {} with {id}: {got:?}",
            on.name
        );
    }

    // Bob's streams end: after `unfollow_after`, B follows his partition
    // no more, and reads none of what is sent there.
    drop(bob_plain);
    let unfollowed = within(50, Duration::from_millis(200), || async {
        followers(&cluster, &urls, pb).await == 0
    })
    .await;
    assert!(unfollowed, "B still follows bob's partition");
    let before = entries_read(&b).await;
    for n in 0..5 {
        tick(&a, &secret, json!({"user": bob_id}), &format!("later-{n}")).await;
    }
    tick(&a, &secret, json!("everyone"), "later-all").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(entries_read(&b).await, before, "B read a partition it left");
    // And bob coming back to B gets exactly those, from the stream.
    let (mut back, _) = bob.resume("", &bob_last).await;
    let got: Vec<String> = ticks_until(&mut back, "later-all")
        .await
        .into_iter()
        .map(|(_, label)| label)
        .collect();
    assert_eq!(
        got,
        [
            "later-0",
            "later-1",
            "later-2",
            "later-3",
            "later-4",
            "later-all"
        ]
    );

    drop((a, b, c));
    cluster.finish().await;
}

#[tokio::test]
async fn a_client_of_a_killed_process_resumes_on_another_exactly_across_partitions() {
    const SENDS: usize = 300;
    let shards = two_shards().await;
    let cluster = sharded(&shards).await;
    let mut a = cluster.start("a").await;
    let b = cluster.start("b").await;
    let c = cluster.start("c").await;
    let secret = cluster.create_token("pub", "publish");
    let [(ann, ann_id, _), _] = one_user_per_shard(&cluster, &a, &shards).await;
    let (mut stream, _) = ann.open("").await;

    // Every third send is for everyone (a copy in every partition), the
    // others for ann; through C, at a steady pace, whatever A does.
    let (base, key) = (c.base.clone(), secret.clone());
    let sender = tokio::spawn(async move {
        for n in 0..SENDS {
            let target = if n % 3 == 2 {
                json!("everyone")
            } else {
                json!({"user": ann_id})
            };
            let body =
                json!({"target": target, "event": "seq", "data": {"message": n.to_string()}});
            let (status, json) = publish(&base, &key, &body.to_string()).await;
            assert_eq!(status, 200, "{json}");
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    });
    let mut got: Vec<usize> = Vec::new();
    let mut last_id = String::new();
    let number = |data: &str| -> usize {
        let json: serde_json::Value = serde_json::from_str(data).expect("JSON");
        json["message"]
            .as_str()
            .expect("message")
            .parse()
            .expect("number")
    };
    while got.len() < SENDS / 3 {
        let (id, name, data) = stream
            .next_with_id(Duration::from_secs(10))
            .await
            .expect("seq on A");
        assert_ne!(name, "sse-reset");
        if name == "seq" {
            got.push(number(&data));
            last_id = id;
        }
    }
    a.kill();
    while let Some((id, name, data)) = stream.next_with_id(Duration::from_secs(2)).await {
        if name == "seq" {
            got.push(number(&data));
            last_id = id;
        }
    }
    // B never followed ann's partition: it starts to, and reads what it
    // lacks from the stream.
    let (mut resumed, _) = ann.at(&b.base).resume("", &last_id).await;
    sender.await.expect("sender");
    while got.len() < SENDS {
        match resumed.next_with_id(Duration::from_secs(5)).await {
            Some((_, name, data)) if name == "seq" => got.push(number(&data)),
            Some((_, name, data)) => assert_ne!(name, "sse-reset", "{data}"),
            None => break,
        }
    }
    while let Some((_, name, data)) = resumed.next_with_id(Duration::from_millis(500)).await {
        assert_ne!(name, "seq", "a second copy: {data}");
    }
    let expected: Vec<usize> = (0..SENDS).collect();
    assert_eq!(got, expected, "exactly the sequence sent, in order, once");

    drop((a, b, c));
    cluster.finish().await;
}

#[tokio::test]
async fn one_shard_restarted_resets_only_the_clients_of_its_partitions() {
    let mut shards = two_shards().await;
    let cluster = sharded(&shards).await;
    let a = cluster.start("a").await;
    let b = cluster.start("b").await;
    let secret = cluster.create_token("pub", "publish");
    // ann's partition on the first shard (which also keeps the cluster's
    // shared state), bob's on the second.
    let [(ann, ann_id, _), (bob, bob_id, _)] = one_user_per_shard(&cluster, &a, &shards).await;
    let (mut ann_stream, _) = ann.open("").await;
    let (mut bob_stream, _) = bob.at(&a.base).open("").await;
    tick(&b, &secret, json!("everyone"), "before").await;
    assert_eq!(ticks_until(&mut ann_stream, "before").await.len(), 1);
    assert_eq!(ticks_until(&mut bob_stream, "before").await.len(), 1);

    // The second shard away: A, which follows bob's partition there, is
    // not ready; B, which follows nothing there, stays ready (one shard
    // lost must not take every process out of the balancer).
    shards[1].stop();
    let a_unready = within(50, Duration::from_millis(100), || async {
        readyz(&a).await == 503
    })
    .await;
    assert!(
        a_unready,
        "A follows a partition it cannot read and says it is ready"
    );
    // (Its publishers to that shard notice within a second or so.)
    for _ in 0..30 {
        assert_eq!(readyz(&b).await, 200, "B follows nothing on the lost shard");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Meanwhile bob opens a stream on B, which does not follow his
    // partition and cannot start to: the stream is let in (nothing to
    // wait for while the shard is away), and ended, to resume, as soon as
    // B follows the partition (it may have missed what came meanwhile).
    let (mut stranded, _) = bob.at(&b.base).open("").await;

    // It comes back empty (no persistence): a lost history.
    shards[1].restart().await;
    assert!(
        stranded.ends_within(Duration::from_secs(10)).await,
        "the stream B let in without following its partition was not ended"
    );
    let mut told = false;
    for _ in 0..3 {
        tick(&b, &secret, json!({"user": bob_id}), "probe").await;
        let got = labels(&mut bob_stream, Duration::from_secs(3)).await;
        if got.contains(&"reset".to_string()) {
            told = true;
            break;
        }
    }
    assert!(
        told,
        "bob's stream was told its partition's history was lost"
    );
    tick(&b, &secret, json!({"user": ann_id}), "after-ann").await;
    tick(&b, &secret, json!({"user": bob_id}), "after-bob").await;
    tick(&b, &secret, json!("everyone"), "after-all").await;
    // ann's partition lost nothing: no reset, exactly what was sent.
    let got: Vec<String> = ticks_until(&mut ann_stream, "after-all")
        .await
        .into_iter()
        .map(|(_, label)| label)
        .collect();
    assert_eq!(got, ["after-ann", "after-all"]);
    let got = labels(&mut bob_stream, Duration::from_millis(1500)).await;
    let tail: Vec<&str> = got
        .iter()
        .map(String::as_str)
        .filter(|l| l.starts_with("after"))
        .collect();
    assert_eq!(tail, ["after-bob", "after-all"], "{got:?}");

    drop((a, b));
    cluster.finish().await;
}

/// A sign-out reaches a process that follows none of the user's
/// partition: it forgets the session it remembered
/// (`auth.stream_session_cache`, 10 s) within a few report intervals, and
/// refuses the next connect of that session.
#[tokio::test]
async fn a_sign_out_reaches_a_process_that_does_not_follow_the_user_s_partition() {
    use crate::stream_sessions::{connect_with, sign_out};
    use crate::support::signup_cookie;

    let shards = two_shards().await;
    let urls = [shards[0].url(), shards[1].url()];
    let cluster = sharded(&shards).await;
    let a = cluster.start("a").await;
    let b = cluster.start("b").await;
    let ann = signup_cookie(&a.base, "partitionedann").await;
    let ann_id = user_id(&cluster.db_url, "partitionedann").await;
    let pa = partitions().of(&UserId::new(ann_id.as_str()));
    for _ in 0..2 {
        assert_eq!(connect_with(&b.base, &ann).await.status(), 200);
    }
    // Her streams ended: after `unfollow_after`, nobody follows her
    // partition, so the kick in it reaches no process.
    let unfollowed = within(50, Duration::from_millis(200), || async {
        followers(&cluster, &urls, pa).await == 0
    })
    .await;
    assert!(unfollowed, "her partition still followed");

    sign_out(&a.base, &ann).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    loop {
        let status = connect_with(&b.base, &ann).await.status();
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            std::time::Instant::now() < deadline,
            "B still streams for a session signed out on A 4 s ago"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop((a, b));
    cluster.finish().await;
}

/// A process that tried to follow a partition of a lost shard, for a
/// stream since gone, is ready again once nothing of it stands there: a
/// lost shard keeps out of the balancer only the processes that still
/// serve its partitions' streams.
#[tokio::test]
async fn a_process_that_no_longer_needs_a_lost_shard_is_ready_again() {
    let mut shards = two_shards().await;
    let cluster = sharded(&shards).await;
    let a = cluster.start("a").await;
    let [_, (bob, _, _)] = one_user_per_shard(&cluster, &a, &shards).await;
    assert_eq!(readyz(&a).await, 200);

    shards[1].stop();
    // Bob's stream comes while his partition's shard is away: A cannot
    // follow it, and says so.
    let (stream, _) = bob.open("").await;
    let unready = within(50, Duration::from_millis(100), || async {
        readyz(&a).await == 503
    })
    .await;
    assert!(unready, "A serves a stream of a partition it cannot follow");
    // The stream leaves: after `unfollow_after` (1 s) nothing of that
    // partition is here, and A is ready though the shard is still away.
    drop(stream);
    let again = within(100, Duration::from_millis(100), || async {
        readyz(&a).await == 200
    })
    .await;
    assert!(
        again,
        "A still not ready 10 s after the partition's last stream left"
    );
    shards[1].restart().await;
    drop(a);
    cluster.finish().await;
}

/// Ids of the one-stream bus, resumed once the bus has partitions, get
/// `sse-reset` (never a position in another stream), and the stream goes
/// on live from there.
#[tokio::test]
async fn ids_from_before_partitions_get_a_reset_never_a_wrong_position() {
    let own = OwnRedis::start().await;
    let mut cluster = Cluster::on(&own.url()).await;
    cluster
        .env
        .push(("BUS_UNFOLLOW_AFTER".to_string(), "1s".to_string()));
    let before = cluster.start("before").await;
    let secret = cluster.create_token("pub", "publish");
    let ann = signup_on(&before.base, "oneann").await;
    let ann_id = user_id(&cluster.db_url, "oneann").await;
    let (mut stream, _) = ann.open("").await;
    for n in 0..3 {
        tick(
            &before,
            &secret,
            json!({"user": ann_id}),
            &format!("old-{n}"),
        )
        .await;
    }
    let old = ticks_until(&mut stream, "old-2").await;
    let first_id = old[0].0.clone();
    drop(stream);
    drop(before);

    let after = cluster
        .start_with("after", &[("BUS_PARTITIONS", "4")])
        .await;
    for id in [first_id.as_str(), old[2].0.as_str()] {
        let (mut resumed, _) = ann.at(&after.base).resume("", id).await;
        tick(&after, &secret, json!({"user": ann_id}), "new").await;
        let got = labels(&mut resumed, Duration::from_millis(800)).await;
        assert_eq!(got, ["reset", "new"], "resuming {id}");
    }
    drop(after);
    cluster.finish().await;
}
