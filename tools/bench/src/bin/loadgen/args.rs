//! The command line: every flag of every scenario, parsed into [`Args`].

use std::net::SocketAddr;

/// The server a run measures.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `sse_notify`: streams need a session, broadcasts an admin.
    Ours,
    /// The naive axum server (`baseline` binary).
    Baseline,
    /// nginx with Nchan, one channel (`scripts/bench.sh` writes its config).
    Nchan,
}

impl Target {
    fn parse(name: &str) -> Result<Self, String> {
        match name {
            "ours" => Ok(Self::Ours),
            "baseline" => Ok(Self::Baseline),
            "nchan" => Ok(Self::Nchan),
            other => Err(format!(
                "--target must be ours, baseline or nchan, not {other}"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Ours => "ours",
            Self::Baseline => "baseline",
            Self::Nchan => "nchan",
        }
    }

    /// Where a client subscribes.
    pub fn stream_path(self) -> &'static str {
        match self {
            Self::Ours => "/api/sse",
            Self::Baseline => "/sse",
            Self::Nchan => "/sub",
        }
    }

    /// Where a broadcast is posted (ours: as the admin, JSON).
    pub fn publish_path(self) -> &'static str {
        match self {
            Self::Ours => "/api/sse/broadcast",
            Self::Baseline => "/publish",
            Self::Nchan => "/pub",
        }
    }
}

#[derive(Clone)]
pub struct Args {
    pub(crate) target: Target,
    /// A name for the server's settings in this run (`--variant`), reported.
    pub(crate) variant: Option<String>,
    pub(crate) addr: SocketAddr,
    pub(crate) scenario: String,
    pub(crate) clients: usize,
    /// Events per second (broadcast, targeted).
    pub(crate) rate: u32,
    /// Seconds to hold or to send for.
    pub(crate) duration: u64,
    /// Server pid, for RSS.
    pub(crate) pid: Option<u32>,
    /// Connections per account (ours).
    pub(crate) per_user: usize,
    pub(crate) concurrency: usize,
    /// Holder processes for the idle connections (idle, targeted).
    pub(crate) processes: usize,
    /// Number of this process's first connection (holders).
    pub(crate) first: usize,
    /// Connect/disconnect cycles (churn), after `warmup` more.
    pub(crate) cycles: usize,
    pub(crate) warmup: usize,
    /// Concurrent publishers (saturate).
    pub(crate) publishers: usize,
    /// Session cookies to connect with, instead of signing in (holders
    /// get them from the coordinator).
    pub(crate) cookies: Vec<String>,
    /// Open each stream on a connection that served a request first.
    pub(crate) reuse: bool,
    /// Events sent while the clients are away (storm); sends (inbox).
    pub(crate) events: usize,
    /// `sqlite`, or a Postgres admin URL (inbox).
    pub(crate) database: String,
    /// The Redis of the bus scenario.
    pub(crate) redis: String,
    /// Where `targeted` sends (another server process of the cluster);
    /// default: `--addr`.
    pub(crate) send_addr: Option<SocketAddr>,
    /// The servers of `fanout`, and their pids (same order).
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) pids: Vec<u32>,
    /// Where a holder writes its streams' latencies when released.
    pub(crate) report: Option<std::path::PathBuf>,
    /// Shard counts the `shards` scenario runs with, and its partitions.
    pub(crate) shards: Vec<usize>,
    pub(crate) partitions: u16,
    /// The share of one core each shard may use (a cgroup quota; 0: no
    /// bound), so that shards scale as if each had a core of its own.
    pub(crate) shard_cpu: f64,
}

pub(crate) fn args() -> Result<Args, String> {
    let mut a = Args {
        target: Target::Ours,
        variant: None,
        addr: "127.0.0.1:3000".parse().map_err(|e| format!("{e}"))?,
        scenario: "idle".into(),
        clients: 1000,
        rate: 10,
        duration: 10,
        pid: None,
        per_user: 1000,
        concurrency: 128,
        processes: 1,
        first: 0,
        cycles: 100_000,
        warmup: 2_000,
        publishers: 4,
        cookies: Vec::new(),
        reuse: false,
        events: 1_000,
        database: "sqlite".into(),
        redis: "redis://127.0.0.1:6379".into(),
        send_addr: None,
        addrs: Vec::new(),
        pids: Vec::new(),
        report: None,
        shards: vec![1, 2, 4],
        partitions: 4,
        shard_cpu: 0.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--reuse" {
            a.reuse = true;
            continue;
        }
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let bad = |e: &dyn std::fmt::Display| format!("{flag}: {e}");
        match flag.as_str() {
            "--target" => a.target = Target::parse(&value()?)?,
            "--variant" => a.variant = Some(value()?),
            "--addr" => a.addr = value()?.parse().map_err(|e| bad(&e))?,
            "--scenario" => a.scenario = value()?,
            "--clients" => a.clients = value()?.parse().map_err(|e| bad(&e))?,
            "--rate" => a.rate = value()?.parse().map_err(|e| bad(&e))?,
            "--duration" => a.duration = value()?.parse().map_err(|e| bad(&e))?,
            "--pid" => a.pid = Some(value()?.parse().map_err(|e| bad(&e))?),
            "--per-user" => a.per_user = value()?.parse().map_err(|e| bad(&e))?,
            "--concurrency" => a.concurrency = value()?.parse().map_err(|e| bad(&e))?,
            "--processes" => a.processes = value()?.parse().map_err(|e| bad(&e))?,
            "--first" => a.first = value()?.parse().map_err(|e| bad(&e))?,
            "--cycles" => a.cycles = value()?.parse().map_err(|e| bad(&e))?,
            "--warmup" => a.warmup = value()?.parse().map_err(|e| bad(&e))?,
            "--publishers" => a.publishers = value()?.parse().map_err(|e| bad(&e))?,
            "--events" => a.events = value()?.parse().map_err(|e| bad(&e))?,
            "--database" => a.database = value()?,
            "--redis" => a.redis = value()?,
            "--addrs" => {
                a.addrs = value()?
                    .split(',')
                    .map(|s| s.parse().map_err(|e| bad(&e)))
                    .collect::<Result<_, _>>()?
            }
            "--pids" => {
                a.pids = value()?
                    .split(',')
                    .map(|s| s.parse().map_err(|e| bad(&e)))
                    .collect::<Result<_, _>>()?
            }
            "--report" => a.report = Some(value()?.into()),
            "--shards" => {
                a.shards = value()?
                    .split([',', ' '])
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().map_err(|e| bad(&e)))
                    .collect::<Result<_, _>>()?
            }
            "--partitions" => a.partitions = value()?.parse().map_err(|e| bad(&e))?,
            "--shard-cpu" => a.shard_cpu = value()?.parse().map_err(|e| bad(&e))?,
            "--send-addr" => a.send_addr = Some(value()?.parse().map_err(|e| bad(&e))?),
            "--cookies" => a.cookies = value()?.split(',').map(str::to_string).collect(),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}
