#!/usr/bin/env bash
# `make bench`: criterion micro-benchmarks of the registry, then the load
# generator against the real server, the naive baseline and Nchan (nginx;
# `BENCH_NCHAN=0` leaves it out), each server pinned to core 0 and the
# generator to core 1. Results: JSON lines in target/bench/results.jsonl,
# the head-to-head table on stdout and charts in target/bench/charts
# (`scripts/charts.py`; see BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${BENCH_CLIENTS:-"1000 5000 19000"}
IDLE_DURATION=${BENCH_IDLE_DURATION:-30}
REUSE_CLIENTS=${BENCH_REUSE_CLIENTS:-5000}
BROADCAST_CLIENTS=${BENCH_BROADCAST_CLIENTS:-10000}
# Broadcast latency at a rate where one fan-out ends before the next event
# (10 000 writes take ~0.12 s of the server's core), then at a rate that
# keeps that core saturated.
RATE=${BENCH_RATE:-2}
LOADED_RATE=${BENCH_LOADED_RATE:-10}
DURATION=${BENCH_DURATION:-15}
REPEAT=${BENCH_REPEAT:-3}
SATURATE_CLIENTS=${BENCH_SATURATE_CLIENTS:-1000}
TARGETED_CLIENTS=${BENCH_TARGETED_CLIENTS:-"1000 5000 18000"}
CHURN_CYCLES=${BENCH_CHURN_CYCLES:-100000}
PRESENCE_CYCLES=${BENCH_PRESENCE_CYCLES:-30000}
SOAK_DURATION=${BENCH_SOAK_DURATION:-600}
STORM_CLIENTS=${BENCH_STORM_CLIENTS:-10000}
STORM_EVENTS=${BENCH_STORM_EVENTS:-1000}
INBOX_EVENTS=${BENCH_INBOX_EVENTS:-100000}
# The Postgres server the inbox scenario creates (and drops) its database on.
POSTGRES_URL=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
# The Redis the cluster scenario's bus uses (it must be otherwise idle).
REDIS_URL=${BENCH_REDIS_URL:-redis://127.0.0.1:6379}
CLUSTER_CLIENTS=${BENCH_CLUSTER_CLIENTS:-1000}
FANOUT_CLIENTS=${BENCH_FANOUT_CLIENTS:-16000}
# How many processes the cluster fan-out runs with (1 is without a bus).
FANOUT_COUNTS=${BENCH_FANOUT_COUNTS:-"1 3 6"}
SCALING_RATE=${BENCH_SCALING_RATE:-1000}
# The shards scenario: sends per run, partitions, and each shard's share of
# a core in its bounded runs (a cgroup; see loadgen's shards.rs).
SHARDS_EVENTS=${BENCH_SHARDS_EVENTS:-200000}
SHARDS_PARTITIONS=${BENCH_SHARDS_PARTITIONS:-4}
SHARDS_CPU=${BENCH_SHARDS_CPU:-0.25}
SCENARIOS=${BENCH_SCENARIOS:-"micro floor idle connects broadcast saturate metrics targeted publish churn presence storm restart inbox cluster scaling shards soak"}
# One generator process opens at most this many sockets (the hard
# open-files limit is 20 000 here); more connections take more processes.
PER_PROCESS=9500
# Where cargo puts the release binaries (CI keeps its cache elsewhere).
bin="${CARGO_TARGET_DIR:-target}/release"
out=target/bench
mkdir -p "${out}"
results="${out}/results.jsonl"
: > "${results}"

# taskset execs the program, so `$!` below is the server's own pid.
if command -v taskset >/dev/null; then on0=(taskset -c 0); on1=(taskset -c 1); else on0=(); on1=(); fi

wants() { [[ " ${SCENARIOS} " == *" $1 "* ]]; }
processes_for() { echo $(( ($1 + PER_PROCESS - 1) / PER_PROCESS )); }

if wants micro; then
echo "==> criterion micro-benchmarks"
cargo bench --no-default-features --features ssr --bench registry -- --noplot ${BENCH_FILTER:-} 2>&1 | tee "${out}/criterion.txt" \
  | grep -E "^(targeted_send|broadcast|connect_disconnect|presence_snapshot)|time:|thrpt:" || true
fi

echo "==> building release binaries"
cargo build --release --no-default-features --features ssr --bin sse_notify
cargo build --release -p sse_notify_bench --bin loadgen --bin baseline

# Nchan, the C baseline: Debian's nginx module, installed when missing.
NCHAN_MODULE=/usr/lib/nginx/modules/ngx_nchan_module.so
if [[ "${BENCH_NCHAN:-1}" != 0 && ! -f ${NCHAN_MODULE} ]]; then
  sudo=$([[ $(id -u) == 0 ]] || echo sudo)
  ${sudo} apt-get install -y libnginx-mod-nchan \
    || { ${sudo} apt-get update && ${sudo} apt-get install -y libnginx-mod-nchan; }
fi

ulimit -n "$(ulimit -Hn)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
server='' baseline='' data='' nchan_dir='' nchan_master=''
# The build of ours that start_servers runs (the `ab` scenario swaps it).
ours_bin="${bin}/sse_notify"
# The password loadgen signs its accounts in with (tools/bench/src/bin/loadgen/http.rs).
BENCH_PASSWORD="bench password 1"

# Both servers, fresh (empty database, no memory from an earlier scenario).
start_servers() {
  stop_servers
  data=$(mktemp -d)
  port=$(free_port)
  bport=$(free_port)
  SSE_MAX_CLIENTS=19500 SSE_PER_USER_MAX=19500 SSE_PER_ADDRESS_MAX=19500 SSE_QUEUE_LEN=1024 \
  AUTH_LOGIN_ATTEMPTS_PER_IP=1000000 AUTH_LOGIN_ATTEMPTS_PER_USER=1000000 \
  RUST_LOG=warn METRICS_ADDR="" SERVER_SENDS_PER_USER=1000000000 METRICS_ENABLED="${BENCH_METRICS:-true}" \
  SSE_PRESENCE_INTERVAL="${BENCH_PRESENCE_INTERVAL:-1s}" \
  SERVER_DRAIN_DELAY=0s SERVER_DRAIN_WINDOW=1s DATA_DIR="${data}" \
  LEPTOS_SITE_ADDR="127.0.0.1:${port}" "${on0[@]}" "${ours_bin}" >> "${out}/server.log" 2>&1 &
  server=$!
  BASELINE_ADDR="127.0.0.1:${bport}" "${on0[@]}" "${bin}/baseline" >> "${out}/baseline.log" 2>&1 &
  baseline=$!
  for _ in $(seq 100); do
    ours_up=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${port}/api/sse/clients" || true)
    base_up=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${bport}/count" || true)
    [[ "${ours_up}" == 401 && "${base_up}" == 200 ]] && break
    sleep 0.1
  done
  # The account that broadcasts and reads the listing: an admin, granted as
  # an operator does.
  curl -s -o /dev/null --data-urlencode username=benchadmin \
    --data-urlencode "password=${BENCH_PASSWORD}" "http://127.0.0.1:${port}/api/auth/signup"
  DATA_DIR="${data}" "${ours_bin}" admin grant benchadmin > /dev/null
  ours=(--target ours --addr "127.0.0.1:${port}" --pid "${server}")
  base=(--target baseline --addr "127.0.0.1:${bport}" --pid "${baseline}")
  start_nchan
}

# nginx + Nchan on a free port, one worker pinned to core 0, one channel
# (`/sub` subscribes with EventSource, `/pub` publishes): sets `nch`, the
# loadgen flags, with the worker's pid (its RSS is the one measured).
start_nchan() {
  nch=()
  [[ "${BENCH_NCHAN:-1}" != 0 ]] || return 0
  nchan_dir=$(mktemp -d)
  local nport
  nport=$(free_port)
  mkdir -p "${nchan_dir}/temp"
  cat > "${nchan_dir}/nginx.conf" <<CONF
load_module ${NCHAN_MODULE};
worker_processes 1;
worker_rlimit_nofile 20000;
error_log ${nchan_dir}/error.log warn;
# 20 000 slots ran out at 19 000 subscribers ("worker_connections are not
# enough"): Nchan takes more than one per subscriber.
events { worker_connections 40000; }
http {
  access_log off;
  client_body_temp_path ${nchan_dir}/temp/body;
  proxy_temp_path ${nchan_dir}/temp/proxy;
  fastcgi_temp_path ${nchan_dir}/temp/fastcgi;
  uwsgi_temp_path ${nchan_dir}/temp/uwsgi;
  scgi_temp_path ${nchan_dir}/temp/scgi;
  server {
    listen 127.0.0.1:${nport} backlog=4096;
    location = /sub {
      nchan_subscriber eventsource;
      nchan_channel_id bench;
      nchan_subscriber_first_message newest;
      nchan_subscriber_timeout 0;
    }
    location = /pub {
      nchan_publisher;
      nchan_channel_id bench;
    }
  }
}
CONF
  "${on0[@]}" nginx -p "${nchan_dir}" -c "${nchan_dir}/nginx.conf" \
    -g "daemon off; pid ${nchan_dir}/nginx.pid;" >> "${out}/nchan.log" 2>&1 &
  nchan_master=$!
  local worker=''
  for _ in $(seq 100); do
    worker=$(pgrep -P "${nchan_master}" | head -n 1 || true)
    # 404 until the channel has a message or a subscriber: it answers.
    [[ -n "${worker}" && "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${nport}/pub" || true)" != 000 ]] && break
    sleep 0.1
  done
  if [[ -z "${worker}" ]]; then
    echo "nginx with Nchan did not start:" >&2
    cat "${out}/nchan.log" "${nchan_dir}/error.log" >&2 || true
    exit 1
  fi
  nch=(--target nchan --addr "127.0.0.1:${nport}" --pid "${worker}")
}

stop_servers() {
  if [[ -n "${server}" ]]; then
    kill "${server}" "${baseline}" 2>/dev/null || true
    wait "${server}" "${baseline}" 2>/dev/null || true
    rm -rf "${data}"
    server=''
  fi
  if [[ -n "${nchan_dir}" ]]; then
    if [[ -n "${nchan_master}" ]]; then
      kill "${nchan_master}" 2>/dev/null || true
      wait "${nchan_master}" 2>/dev/null || true
    fi
    rm -rf "${nchan_dir}"
    nchan_dir=''
  fi
}
trap stop_servers EXIT
: > "${out}/server.log"
: > "${out}/baseline.log"
: > "${out}/nchan.log"

gen() { "${on1[@]}" "${bin}/loadgen" "$@" | tee -a "${results}"; }
# The same run against Nchan, when it is on (`BENCH_NCHAN=0` leaves it out).
gen_nchan() { [[ ${#nch[@]} == 0 ]] || gen "${nch[@]}" "$@"; }

if wants floor; then
  echo "==> floor: plain 1 KiB writes to ${BROADCAST_CLIENTS} loopback sockets"
  gen --scenario floor --clients "${BROADCAST_CLIENTS}"
fi

if wants idle; then
  for n in ${CLIENTS}; do
    start_servers
    p=$(processes_for "${n}")
    echo "==> idle hold, ${n} connections (${p} generator processes), ${IDLE_DURATION}s"
    gen "${ours[@]}" --scenario idle --clients "${n}" --processes "${p}" --duration "${IDLE_DURATION}"
    gen "${base[@]}" --scenario idle --clients "${n}" --processes "${p}" --duration "${IDLE_DURATION}"
    gen_nchan --scenario idle --clients "${n}" --processes "${p}" --duration "${IDLE_DURATION}"
  done
  # As a browser does when its EventSource reuses a keep-alive connection
  # of the page: the stream is then served by hyper, not written directly.
  start_servers
  echo "==> idle hold, ${REUSE_CLIENTS} connections that served a request before the stream, ${IDLE_DURATION}s"
  gen "${ours[@]}" --scenario idle --reuse --clients "${REUSE_CLIENTS}" --duration "${IDLE_DURATION}"
  gen "${base[@]}" --scenario idle --reuse --clients "${REUSE_CLIENTS}" --duration "${IDLE_DURATION}"
  gen_nchan --scenario idle --reuse --clients "${REUSE_CLIENTS}" --duration "${IDLE_DURATION}"
fi

if wants broadcast; then
  start_servers
  echo "==> broadcast of 1 KiB to ${BROADCAST_CLIENTS} clients at ${RATE}/s for ${DURATION}s (x${REPEAT}, alternating)"
  for _ in $(seq "${REPEAT}"); do
    gen "${ours[@]}" --scenario broadcast --clients "${BROADCAST_CLIENTS}" --rate "${RATE}" --duration "${DURATION}"
    gen "${base[@]}" --scenario broadcast --clients "${BROADCAST_CLIENTS}" --rate "${RATE}" --duration "${DURATION}"
    gen_nchan --scenario broadcast --clients "${BROADCAST_CLIENTS}" --rate "${RATE}" --duration "${DURATION}"
  done
  echo "==> the same at ${LOADED_RATE}/s (the server's core saturated)"
  gen "${ours[@]}" --scenario broadcast --clients "${BROADCAST_CLIENTS}" --rate "${LOADED_RATE}" --duration "${DURATION}"
  gen "${base[@]}" --scenario broadcast --clients "${BROADCAST_CLIENTS}" --rate "${LOADED_RATE}" --duration "${DURATION}"
  gen_nchan --scenario broadcast --clients "${BROADCAST_CLIENTS}" --rate "${LOADED_RATE}" --duration "${DURATION}"
fi

if wants saturate; then
  start_servers
  echo "==> saturation: 1 KiB broadcasts to ${SATURATE_CLIENTS} clients as fast as 4 publishers go, ${DURATION}s (x2)"
  for _ in 1 2; do
    gen "${ours[@]}" --scenario saturate --clients "${SATURATE_CLIENTS}" --publishers 4 --duration "${DURATION}"
    gen "${base[@]}" --scenario saturate --clients "${SATURATE_CLIENTS}" --publishers 4 --duration "${DURATION}"
    gen_nchan --scenario saturate --clients "${SATURATE_CLIENTS}" --publishers 4 --duration "${DURATION}"
  done
fi

# Where a connect's time goes: cold connects of 9 000 streams (9 sign-ins,
# 1 000 streams each) with stream connects remembering sessions (the
# default), reading the session on every connect, and remembering it with
# no inbox backlog read either (no database on a connect at all: what the
# rest of the path costs), alternating, a fresh server each (variants
# connects-cached / -uncached / -no-db), and Nchan in the same scenario.
if wants connects; then
  for _ in $(seq "${REPEAT}"); do
    for v in cached uncached no-db; do
      cache=$([[ ${v} == uncached ]] && echo 0s || echo 10s)
      backlog=$([[ ${v} == no-db ]] && echo 0 || echo 100)
      AUTH_STREAM_SESSION_CACHE=${cache} SSE_INBOX_REPLAY_MAX=${backlog} BENCH_NCHAN=0 start_servers
      echo "==> connects (${v}): 9000 cold connects"
      gen "${ours[@]}" --variant "connects-${v}" --scenario idle --clients 9000 --duration 3
    done
    # Nchan in the same scenario, for the comparison.
    if [[ "${BENCH_NCHAN:-1}" != 0 ]]; then
      start_servers
      echo "==> connects (Nchan): 9000 cold connects"
      gen_nchan --variant connects-nchan --scenario idle --clients 9000 --duration 3
    fi
  done
fi

# This build against another (`BENCH_AB_BIN`: its sse_notify, e.g. built
# from an earlier commit in a worktree), alternating, each on a fresh
# server: broadcast at both rates and saturation (variants ab-head,
# ab-other). Not in the default list: it needs the other build.
if wants ab; then
  if [[ -z "${BENCH_AB_BIN:-}" ]]; then
    echo "ab: set BENCH_AB_BIN to the other build's sse_notify" >&2
    exit 1
  fi
  for _ in $(seq "${REPEAT}"); do
    for side in head other; do
      ours_bin=$([[ ${side} == head ]] && echo "${bin}/sse_notify" || echo "${BENCH_AB_BIN}")
      BENCH_NCHAN=0 start_servers
      echo "==> A/B (${side}): broadcast at ${RATE}/s and ${LOADED_RATE}/s to ${BROADCAST_CLIENTS}, saturation"
      for rate in "${RATE}" "${LOADED_RATE}"; do
        gen "${ours[@]}" --variant "ab-${side}" --scenario broadcast --clients "${BROADCAST_CLIENTS}" --rate "${rate}" --duration "${DURATION}"
      done
      gen "${ours[@]}" --variant "ab-${side}" --scenario saturate --clients "${SATURATE_CLIENTS}" --publishers 4 --duration "${DURATION}"
    done
  done
  ours_bin="${bin}/sse_notify"
fi

# The cost of metrics on the hot path: the same server with metrics on and
# off, alternating, in one run (reported with "variant": metrics-on / metrics-off).
if wants metrics; then
  for _ in 1 2; do
    for on in true false; do
      BENCH_METRICS=${on} start_servers
      label=$([[ ${on} == true ]] && echo on || echo off)
      echo "==> metrics ${label}: broadcast 1 KiB to ${BROADCAST_CLIENTS} at ${RATE}/s, then saturation"
      gen "${ours[@]}" --variant "metrics-${label}" --scenario broadcast --clients "${BROADCAST_CLIENTS}" --rate "${RATE}" --duration "${DURATION}"
      gen "${ours[@]}" --variant "metrics-${label}" --scenario saturate --clients "${SATURATE_CLIENTS}" --publishers 4 --duration "${DURATION}"
    done
  done
fi

if wants targeted; then
  start_servers
  for n in ${TARGETED_CLIENTS}; do
    p=$(processes_for "${n}")
    echo "==> targeted sends, 50/s for ${DURATION}s, to one user while ${n} others are connected"
    gen "${ours[@]}" --scenario targeted --clients "${n}" --processes "${p}" --rate 50 --duration "${DURATION}"
  done
fi

# The publish API (service token, single events and batches of 100)
# against the app's own send path (a server function calling
# Notifier::send in-process), alternating, each with 4 publishers on
# keep-alive connections as fast as they go, one probe stream receiving.
if wants publish; then
  start_servers
  BENCH_SERVICE_TOKEN=$(DATA_DIR="${data}" "${bin}/sse_notify" token create bench --scope publish \
    --rate 4000000000 2>/dev/null)
  export BENCH_SERVICE_TOKEN
  echo "==> publish: 4 publishers for ${DURATION}s, via the API (1 and 100 per request) and via Notifier::send (x2, alternating)"
  for _ in 1 2; do
    gen "${ours[@]}" --scenario publish --publishers 4 --events 1 --duration "${DURATION}"
    gen "${ours[@]}" --scenario publish --publishers 4 --events 100 --duration "${DURATION}"
    gen "${ours[@]}" --scenario publish --variant notifier --publishers 4 --duration "${DURATION}"
  done
fi

# `count` server processes sharing a fresh Postgres database and (with a
# URL) the Redis bus, all on core 0 (the generator on core 1). Sets
# `cluster_addrs` and `cluster_pids`, and `cluster_a` (loadgen flags for
# the first).
start_cluster() {
  stop_servers
  local bus_url=$1 count=$2 db="sse_notify_bench_$$_${RANDOM}"
  psql "${POSTGRES_URL}" -q -c "CREATE DATABASE ${db}"
  cluster_db=${db}
  cluster_data=$(mktemp -d)
  local pg_base=${POSTGRES_URL%/*} prefix="bench-${db}" port
  cluster_pids=() cluster_addrs=()
  for i in $(seq "${count}"); do
    port=$(free_port)
    SSE_MAX_CLIENTS=19500 SSE_PER_USER_MAX=19500 SSE_PER_ADDRESS_MAX=19500 SSE_QUEUE_LEN=1024 \
    AUTH_LOGIN_ATTEMPTS_PER_IP=1000000 AUTH_LOGIN_ATTEMPTS_PER_USER=1000000 \
    RUST_LOG=warn METRICS_ADDR="" SERVER_SENDS_PER_USER=1000000000 METRICS_ENABLED="${BENCH_METRICS:-true}" DATA_DIR="${cluster_data}/${i}" \
    DATABASE_URL="${pg_base}/${db}" BUS_URL="${bus_url}" BUS_PREFIX="${prefix}" BUS_INSTANCE="s${i}" \
    LEPTOS_SITE_ADDR="127.0.0.1:${port}" "${on0[@]}" "${ours_bin}" >> "${out}/server.log" 2>&1 &
    cluster_pids+=($!)
    cluster_addrs+=("127.0.0.1:${port}")
    for _ in $(seq 100); do
      [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${port}/api/sse/clients" || true)" == 401 ]] && break
      sleep 0.1
    done
  done
  curl -s -o /dev/null --data-urlencode username=benchadmin \
    --data-urlencode "password=${BENCH_PASSWORD}" "http://${cluster_addrs[0]}/api/auth/signup"
  DATABASE_URL="${pg_base}/${db}" DATA_DIR="${cluster_data}" "${bin}/sse_notify" admin grant benchadmin > /dev/null
  cluster_a=(--target ours --addr "${cluster_addrs[0]}" --pid "${cluster_pids[0]}")
}

stop_cluster() {
  kill "${cluster_pids[@]}" 2>/dev/null || true
  wait "${cluster_pids[@]}" 2>/dev/null || true
  psql "${POSTGRES_URL}" -q -c "DROP DATABASE IF EXISTS ${cluster_db} WITH (FORCE)" || true
  rm -rf "${cluster_data}"
}

if wants cluster; then
  echo "==> bus: 20 000 sends through the in-process bus and through Redis, no HTTP; then 1 000/s for 10 s"
  "${bin}/loadgen" --scenario bus --events 20000 --rate 1000 --duration 10 --redis "${REDIS_URL}" \
    | tee -a "${results}"
  # The same HTTP send path three ways, in one run: one process without a
  # bus; two processes on Redis, sent on the receiver's process; sent on
  # the other process.
  for mode in single same-process cross-process; do
    if [[ ${mode} == single ]]; then start_cluster "" 1; else start_cluster "${REDIS_URL}" 2; fi
    send=(); [[ ${mode} == cross-process ]] && send=(--send-addr "${cluster_addrs[1]}")
    echo "==> targeted live sends at 1 000/s for ${DURATION}s, ${CLUSTER_CLIENTS} idle clients, ${mode}"
    gen "${cluster_a[@]}" --scenario targeted --clients "${CLUSTER_CLIENTS}" --rate 1000 \
      --duration "${DURATION}" "${send[@]}"
    stop_cluster
  done
  # One process (no bus, the floor) then FANOUT_COUNTS on Redis, each
  # holding FANOUT_CLIENTS streams, a 1 KiB broadcast to all at 1/s.
  for count in ${FANOUT_COUNTS}; do
    bus=""; [[ ${count} -gt 1 ]] && bus=${REDIS_URL}
    start_cluster "${bus}" "${count}"
    addrs=$(IFS=,; echo "${cluster_addrs[*]}"); pids=$(IFS=,; echo "${cluster_pids[*]}")
    echo "==> fan-out: ${count} process(es) x ${FANOUT_CLIENTS} streams, 1 KiB broadcast at 1/s for ${DURATION}s"
    gen "${cluster_a[@]}" --scenario fanout --addrs "${addrs}" --pids "${pids}" \
      --clients "${FANOUT_CLIENTS}" --processes "$(processes_for "${FANOUT_CLIENTS}")" --rate 1 \
      --duration "${DURATION}"
    stop_cluster
  done
fi

# The cluster paths against another build (`BENCH_AB_BIN`, e.g. the one
# before a bus change), alternating, REPEAT times: targeted live sends
# across two processes at 1 000/s, and the fan-out to 3 x FANOUT_CLIENTS.
if wants cluster-ab; then
  if [[ -z "${BENCH_AB_BIN:-}" ]]; then
    echo "cluster-ab: set BENCH_AB_BIN to the other build's sse_notify" >&2
    exit 1
  fi
  for _ in $(seq "${REPEAT}"); do
    for side in head other; do
      ours_bin=$([[ ${side} == head ]] && echo "${bin}/sse_notify" || echo "${BENCH_AB_BIN}")
      start_cluster "${REDIS_URL}" 2
      echo "==> cluster A/B (${side}): targeted live sends at 1 000/s, cross-process"
      gen "${cluster_a[@]}" --variant "cluster-ab-${side}" --scenario targeted \
        --clients "${CLUSTER_CLIENTS}" --rate 1000 --duration "${DURATION}" --send-addr "${cluster_addrs[1]}"
      stop_cluster
      start_cluster "${REDIS_URL}" 3
      addrs=$(IFS=,; echo "${cluster_addrs[*]}"); pids=$(IFS=,; echo "${cluster_pids[*]}")
      echo "==> cluster A/B (${side}): fan-out 3 x ${FANOUT_CLIENTS}"
      gen "${cluster_a[@]}" --variant "cluster-ab-${side}" --scenario fanout --addrs "${addrs}" --pids "${pids}" \
        --clients "${FANOUT_CLIENTS}" --processes "$(processes_for "${FANOUT_CLIENTS}")" --rate 1 \
        --duration "${DURATION}"
      stop_cluster
    done
  done
  ours_bin="${bin}/sse_notify"
fi

# The scaling model's check at the small end (docs/scaling.md): 1, 2 and
# 3 processes on a Redis of their own (started here, nothing else on it),
# targeted sends at SCALING_RATE/s for DURATION s to streams held by the
# first process; Redis's own counters around the sends say what it took
# in and gave out. Both reads in one run: `bus.follow = all` (every
# process reads every event: the model's "today") and `own` (a process
# reads only its own clients' users: the others should add nothing), then
# `own` over 4 partitions (`own-p4`: the partitioned bus, on one Redis).
if wants scaling; then
  # A free port can be taken between the probe and the bind (after the
  # fan-out, the ephemeral range is busy): a few tries on new ports.
  for _ in 1 2 3 4 5; do
    scaling_port=$(free_port)
    "${on0[@]}" redis-server --port "${scaling_port}" --save '' --appendonly no \
      > "${out}/scaling-redis.log" 2>&1 &
    scaling_redis=$!
    for _ in $(seq 50); do redis-cli -p "${scaling_port}" ping > /dev/null 2>&1 && break 2; sleep 0.1; done
    kill "${scaling_redis}" 2>/dev/null || true
  done
  redis_stat() { redis-cli -p "${scaling_port}" info stats | tr -d '\r' | awk -F: -v k="$1" '$1 == k { print $2 }'; }
  for follow in all own own-p4; do
    export BUS_FOLLOW=${follow%-p4}
    if [[ ${follow} == own-p4 ]]; then export BUS_PARTITIONS=4; else unset BUS_PARTITIONS; fi
    for count in 1 2 3; do
      start_cluster "redis://127.0.0.1:${scaling_port}" "${count}"
      # Let the processes' first reports and reads settle.
      sleep 3
      in0=$(redis_stat total_net_input_bytes) out0=$(redis_stat total_net_output_bytes)
      cmd0=$(redis_stat total_commands_processed) t0=$(date +%s.%N)
      echo "==> scaling check: bus.follow=${follow}, ${count} process(es), targeted sends at ${SCALING_RATE}/s for ${DURATION}s"
      gen "${cluster_a[@]}" --variant "scaling-${follow}-${count}" --scenario targeted --clients 100 \
        --rate "${SCALING_RATE}" --duration "${DURATION}"
      in1=$(redis_stat total_net_input_bytes) out1=$(redis_stat total_net_output_bytes)
      cmd1=$(redis_stat total_commands_processed) t1=$(date +%s.%N)
      python3 -c 'import json, sys; a = sys.argv; print(json.dumps({"scenario": "scaling-check", "follow": a[8], "processes": int(a[1]), "rate": float(a[2]), "seconds": round(float(a[7]) - float(a[3]), 3), "redis_in_bytes": int(a[4]), "redis_out_bytes": int(a[5]), "redis_commands": int(a[6])}))' \
        "${count}" "${SCALING_RATE}" "${t0}" "$((in1 - in0))" "$((out1 - out0))" "$((cmd1 - cmd0))" "${t1}" "${follow}" \
        | tee -a "${results}"
      stop_cluster
    done
  done
  unset BUS_FOLLOW BUS_PARTITIONS
  kill "${scaling_redis}" 2>/dev/null || true
  wait "${scaling_redis}" 2>/dev/null || true
fi

# Publish throughput of one process as the bus's partitions spread over
# 1, 2 and 4 Redis shards (redis-servers loadgen starts): unbounded, where
# the shards and the publisher share this machine's cores; then with each
# shard held to SHARDS_CPU of a core (a cgroup, when this machine lets
# us), as each would be with a core of its own, scaled down. REPEAT runs
# of each.
if wants shards; then
  for run in $(seq "${REPEAT}"); do
    echo "==> shards (${run}/${REPEAT}): ${SHARDS_EVENTS} per-user sends, ${SHARDS_PARTITIONS} partitions on 1, 2, 4 shards, unbounded"
    "${bin}/loadgen" --scenario shards --events "${SHARDS_EVENTS}" --partitions "${SHARDS_PARTITIONS}" \
      --shards "1 2 4" | tee -a "${results}"
    if [[ -w /sys/fs/cgroup/cpu ]]; then
      echo "==> shards (${run}/${REPEAT}): each shard held to ${SHARDS_CPU} of a core"
      "${bin}/loadgen" --scenario shards --events "$((SHARDS_EVENTS / 2))" --partitions "${SHARDS_PARTITIONS}" \
        --shards "1 2 4" --shard-cpu "${SHARDS_CPU}" | tee -a "${results}"
    else
      echo "shards: /sys/fs/cgroup/cpu is not writable here; the bounded runs are left out" >&2
    fi
  done
fi

if wants churn; then
  start_servers
  echo "==> churn: ${CHURN_CYCLES} connect/disconnect cycles"
  gen "${ours[@]}" --scenario churn --cycles "${CHURN_CYCLES}" --concurrency 64
  gen "${base[@]}" --scenario churn --cycles "${CHURN_CYCLES}" --concurrency 64
  gen_nchan --scenario churn --cycles "${CHURN_CYCLES}" --concurrency 64
fi

# What presence costs a connect and a disconnect: the same churn with
# presence on (the default, 1 s) and off, alternating.
if wants presence; then
  for _ in 1 2; do
    for interval in 1s 0s; do
      BENCH_PRESENCE_INTERVAL=${interval} start_servers
      label=$([[ ${interval} == 0s ]] && echo off || echo on)
      echo "==> presence ${label}: ${PRESENCE_CYCLES} connect/disconnect cycles"
      gen "${ours[@]}" --variant "presence-${label}" --scenario churn --cycles "${PRESENCE_CYCLES}" --concurrency 64
    done
  done
fi

if wants storm; then
  start_servers
  echo "==> reconnect storm: ${STORM_CLIENTS} clients drop and come back at once, ${STORM_EVENTS} events missed, with and without replay"
  gen "${ours[@]}" --scenario storm --clients "${STORM_CLIENTS}" --events "${STORM_EVENTS}" --concurrency 256
fi

if wants restart; then
  start_servers
  echo "==> restart storm: ${STORM_CLIENTS} clients back from a restarted server, ${STORM_EVENTS} stored notifications (all received, unread), with and without the inbox position"
  gen "${ours[@]}" --scenario restart --clients "${STORM_CLIENTS}" --events "${STORM_EVENTS}" --concurrency 256
fi

if wants inbox; then
  stop_servers
  # In process, on both cores: the writer, its callers and (for SQLite)
  # the database are one process; Postgres is the machine's own server.
  echo "==> inbox: ${INBOX_EVENTS} persistent sends to distinct users, then 1 000/s for 10 s, on SQLite and Postgres"
  "${bin}/loadgen" --scenario inbox --database sqlite --events "${INBOX_EVENTS}" \
    --concurrency 1000 --rate 1000 --duration 10 | tee -a "${results}"
  "${bin}/loadgen" --scenario inbox --database "${POSTGRES_URL}" --events "${INBOX_EVENTS}" \
    --concurrency 1000 --rate 1000 --duration 10 | tee -a "${results}"
fi

if wants soak; then
  start_servers
  echo "==> soak: ${SOAK_DURATION} s of mixed traffic abandoned mid-response, then SIGTERM"
  log_from=$(wc -l < "${out}/server.log")
  gen "${ours[@]}" --scenario soak --duration "${SOAK_DURATION}" --concurrency 40
  # Stopped as an operator stops it; it must exit within its
  # shutdown_timeout (10 s) plus the 3 s the binary allows itself.
  t0=$(date +%s.%N)
  kill -TERM "${server}"
  exited=false
  for _ in $(seq 300); do
    if ! kill -0 "${server}" 2>/dev/null; then exited=true; break; fi
    sleep 0.05
  done
  exit_seconds=$(python3 -c "import time; print(round(time.time() - ${t0}, 2))")
  $exited || kill -KILL "${server}" 2>/dev/null || true
  wait "${server}" 2>/dev/null || true
  panics=$(tail -n "+$((log_from + 1))" "${out}/server.log" | grep -c panicked || true)
  echo "{\"target\":\"ours\",\"scenario\":\"soak-shutdown\",\"exited\":${exited},\"exit_seconds\":${exit_seconds},\"panics_logged\":${panics}}" | tee -a "${results}"
  kill "${baseline}" 2>/dev/null || true
  wait "${baseline}" 2>/dev/null || true
  rm -rf "${data}"
  server=''
fi

echo "==> results in ${results}"
# The table (and, with matplotlib, the charts) of this run.
python=python3
[[ -x .tools/python/bin/python ]] && python=.tools/python/bin/python
"${python}" scripts/charts.py "${results}" "${out}/charts" || true
