#!/usr/bin/env bash
# `make bench`: criterion micro-benchmarks of the registry, then the load
# generator against the real server and the naive baseline, server pinned
# to core 0 and generator to core 1. Results: JSON lines in
# target/bench/results.jsonl and a summary on stdout (see BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${BENCH_CLIENTS:-"1000 5000"}
BROADCAST_CLIENTS=${BENCH_BROADCAST_CLIENTS:-5000}
RATE=${BENCH_RATE:-10}
DURATION=${BENCH_DURATION:-10}
REPEAT=${BENCH_REPEAT:-3}
out=target/bench
mkdir -p "${out}"
results="${out}/results.jsonl"
: > "${results}"

# taskset execs the program, so `$!` below is the server's own pid.
if command -v taskset >/dev/null; then on0=(taskset -c 0); on1=(taskset -c 1); else on0=(); on1=(); fi

echo "==> criterion micro-benchmarks"
cargo bench --no-default-features --features ssr --bench registry -- --noplot ${BENCH_FILTER:-} 2>&1 | tee "${out}/criterion.txt" \
  | grep -E "^(targeted_send|broadcast|connect_disconnect)|time:|thrpt:" || true

echo "==> building release binaries"
cargo build --release --no-default-features --features ssr --bin sse_notify --bin loadgen --bin baseline

ulimit -n "$(ulimit -Hn)"
data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
bport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

SSE_MAX_CLIENTS=19500 SSE_PER_USER_MAX=19500 SSE_QUEUE_LEN=1024 AUTH_LOGIN_ATTEMPTS_PER_IP=1000000 \
AUTH_ADMINS=benchadmin SSE_ENABLE_LOGGING=false RUST_LOG=warn DATA_DIR="${data}" \
LEPTOS_SITE_ADDR="127.0.0.1:${port}" "${on0[@]}" target/release/sse_notify > "${out}/server.log" 2>&1 &
server=$!
BASELINE_ADDR="127.0.0.1:${bport}" "${on0[@]}" target/release/baseline > "${out}/baseline.log" 2>&1 &
baseline=$!
trap 'kill ${server} ${baseline} 2>/dev/null || true; rm -rf "${data}"' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:${port}/favicon.ico" >/dev/null && curl -sf "http://127.0.0.1:${bport}/count" >/dev/null && break
  sleep 0.1
done

gen() { "${on1[@]}" target/release/loadgen "$@" | tee -a "${results}"; }

echo "==> floor: plain 1 KiB writes to N loopback sockets"
gen --scenario floor --clients "${BROADCAST_CLIENTS}"

for n in ${CLIENTS}; do
  echo "==> idle hold, ${n} connections, ${DURATION}s"
  gen --target ours --addr "127.0.0.1:${port}" --scenario idle --clients "${n}" --duration "${DURATION}" --pid "${server}"
  gen --target baseline --addr "127.0.0.1:${bport}" --scenario idle --clients "${n}" --duration "${DURATION}" --pid "${baseline}"
done

echo "==> broadcast of 1 KiB to ${BROADCAST_CLIENTS} clients at ${RATE}/s for ${DURATION}s (x${REPEAT}, alternating)"
for _ in $(seq "${REPEAT}"); do
  gen --target ours --addr "127.0.0.1:${port}" --scenario broadcast --clients "${BROADCAST_CLIENTS}" --rate "${RATE}" --duration "${DURATION}"
  gen --target baseline --addr "127.0.0.1:${bport}" --scenario broadcast --clients "${BROADCAST_CLIENTS}" --rate "${RATE}" --duration "${DURATION}"
done

echo "==> results in ${results}"
