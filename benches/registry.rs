//! Micro-benchmarks of the registry: what a send costs, with many clients
//! registered. Run with `make bench` (or `cargo bench --features ssr`).

use std::sync::Arc;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sse_notify::sse::{
    Event, Identity, Notifier, Registry, SessionId, SseConfig, Tag, Target, UserId,
};

fn config(clients: usize) -> SseConfig {
    SseConfig {
        max_clients: clients + 10,
        per_user_max: clients + 10,
        queue_len: 4,
        ..SseConfig::default()
    }
}

fn identity(user: usize) -> Identity {
    Identity {
        user: UserId::new(format!("user-{user}")),
        username: format!("user-{user}"),
        session: SessionId::new(format!("session-{user}")),
        tags: vec![Tag::new("role", "user").expect("tag")],
        since: None,
    }
}

/// `clients` connections, one per user, with their queues kept open.
fn registry_with(clients: usize) -> (Arc<Registry>, Vec<sse_notify::sse::registry::Registration>) {
    let registry = Arc::new(Registry::new(config(clients)));
    let held = (0..clients)
        .map(|i| {
            registry
                .register(&identity(i), Vec::new())
                .expect("register")
        })
        .collect();
    (registry, held)
}

fn event() -> Event {
    Event::new("bench", &serde_json::json!({ "message": "x".repeat(200) })).expect("event")
}

/// One targeted send to the next user in a scattered order (`n` moves
/// on), whose queue is then emptied so it never overflows.
fn send_to_next_user(
    registry: &Registry,
    held: &mut [sse_notify::sse::registry::Registration],
    n: &mut usize,
    event: &Event,
) -> usize {
    *n = (*n + 7919) % held.len();
    let target = Target::user(UserId::new(format!("user-{n}")));
    let reached = registry.send(&target, event).expect("send");
    let _ = held[*n].try_next();
    reached
}

/// One send to one user while 1k / 10k / 100k clients are registered:
/// should not grow with the number of clients.
fn targeted(c: &mut Criterion) {
    let mut group = c.benchmark_group("targeted_send");
    let event = event();
    for clients in [1_000usize, 10_000, 100_000] {
        let (registry, mut held) = registry_with(clients);
        let mut n = 0usize;
        group.bench_with_input(BenchmarkId::from_parameter(clients), &clients, |b, _| {
            b.iter(|| send_to_next_user(&registry, &mut held, &mut n, &event))
        });
        drop(held.drain(..));
    }
    group.finish();
}

/// A broadcast: cost per receiver (framing once, a queue push each).
fn broadcast(c: &mut Criterion) {
    let mut group = c.benchmark_group("broadcast");
    let event = event();
    for clients in [1_000usize, 10_000] {
        let (registry, mut held) = registry_with(clients);
        group.throughput(Throughput::Elements(clients as u64));
        group.bench_with_input(BenchmarkId::from_parameter(clients), &clients, |b, _| {
            b.iter_batched(
                || {
                    for reg in held.iter_mut() {
                        while reg.try_next().is_some() {}
                    }
                },
                |()| registry.send(&Target::all(), &event).expect("send"),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// A targeted send at 10k registered, with the replay history off and at
/// its default length (every send is also recorded there, and the oldest
/// entry dropped once it is full).
fn history(c: &mut Criterion) {
    let mut group = c.benchmark_group("send_history");
    let event = event();
    let clients = 10_000usize;
    for (label, history_len) in [("off", 0usize), ("10000", 10_000)] {
        let registry = Arc::new(Registry::new(SseConfig {
            history_len,
            ..config(clients)
        }));
        let mut held: Vec<_> = (0..clients)
            .map(|i| {
                registry
                    .register(&identity(i), Vec::new())
                    .expect("register")
            })
            .collect();
        // Fill the history first, so the figure includes trimming.
        for n in 0..history_len {
            let target = Target::user(UserId::new(format!("user-{}", n % clients)));
            registry.send(&target, &event).expect("send");
            let _ = held[n % clients].try_next();
        }
        let mut n = 0usize;
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| send_to_next_user(&registry, &mut held, &mut n, &event))
        });
    }
    group.finish();
}

/// Register and drop (unregister) one client while 10k others are there.
fn connect_disconnect(c: &mut Criterion) {
    let (registry, _held) = registry_with(10_000);
    let who = identity(999_999);
    let tags = vec![Tag::new("page", "home").expect("tag")];
    c.bench_function("connect_disconnect_10k", |b| {
        b.iter(|| drop(registry.register(&who, tags.clone()).expect("register")))
    });
}

/// What metrics add to a send (a counter by target kind, the latency
/// histogram): a targeted send through the notifier, 10k registered,
/// metrics on and off.
fn metrics_cost(c: &mut Criterion) {
    let mut group = c.benchmark_group("send_metrics");
    let event = event();
    for on in [true, false] {
        let notifier = Notifier::new(SseConfig {
            metrics: on,
            ..config(10_000)
        });
        let registry = notifier.registry().clone();
        let mut held: Vec<_> = (0..10_000)
            .map(|i| {
                registry
                    .register(&identity(i), Vec::new())
                    .expect("register")
            })
            .collect();
        let mut n = 0usize;
        group.bench_function(if on { "on" } else { "off" }, |b| {
            b.iter(|| {
                n = (n + 7919) % held.len();
                let target = Target::user(UserId::new(format!("user-{n}")));
                let reached = notifier.send_event(&target, &event).expect("send");
                let _ = held[n].try_next();
                reached
            })
        });
    }
    group.finish();
}

/// What presence costs each process per interval: one read of every
/// connection (1k / 10k, each on one of 100 channels). Nothing is done
/// per connect or disconnect.
fn presence_snapshot(c: &mut Criterion) {
    let mut group = c.benchmark_group("presence_snapshot");
    for clients in [1_000usize, 10_000] {
        let registry = Arc::new(Registry::new(config(clients)));
        let _held: Vec<_> = (0..clients)
            .map(|i| {
                let room = Tag::new("room", &format!("r{}", i % 100)).expect("tag");
                registry
                    .register(&identity(i), vec![room])
                    .expect("register")
            })
            .collect();
        group.throughput(Throughput::Elements(clients as u64));
        group.bench_with_input(BenchmarkId::from_parameter(clients), &clients, |b, _| {
            b.iter(|| registry.presence_snapshot().channels.len())
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    targeted,
    broadcast,
    history,
    connect_disconnect,
    metrics_cost,
    presence_snapshot
);
criterion_main!(benches);
