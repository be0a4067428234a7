#!/usr/bin/env bash
# `make test`: every check in order, stopping at the first failure, ending
# with one summary line. Run through the Makefile, which installs the tools.
set -uo pipefail
cd "$(dirname "$0")/.."

: "${SERVER_BIN:?SERVER_BIN must name the release server binary}"
start=$(date +%s)
passed=()
log_dir=$(mktemp -d)

step() {
  local name=$1
  shift
  local t0
  t0=$(date +%s)
  echo "==> ${name}: $*"
  if "$@"; then
    passed+=("${name} $(($(date +%s) - t0))s")
  else
    local code=$?
    echo "make test: FAILED at ${name} (exit ${code}) after $(($(date +%s) - start))s; passed before it: ${passed[*]:-none}"
    exit 1
  fi
}

e2e() {
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  local data_dir="${log_dir}/e2e-data"
  mkdir -p "${data_dir}"
  (cd end2end && E2E_PORT="${port}" E2E_DATA_DIR="${data_dir}" SERVER_BIN="${SERVER_BIN}" \
    npx playwright test)
}

step fmt cargo fmt --check
# Files `include!`d once per database engine, which `cargo fmt` does not reach.
included=(crates/axum_sse_notify/src/inbox/store/{claim,read,read_state,retention}.rs
  crates/axum_sse_notify/src/service/statements.rs)
step fmt-included rustfmt --edition 2024 --check "${included[@]}"
step clippy-ssr cargo clippy --no-default-features --features ssr --all-targets -- -D warnings
# The workspace's other crates: the SSE layer (in its smallest and its
# fullest form), the connection server, the example app, the bench tools.
layer_all=axum_sse_notify/sqlite,axum_sse_notify/postgres,axum_sse_notify/redis,axum_sse_notify/lean-serve,axum_sse_notify/leptos,axum_sse_notify/service
step clippy-crates cargo clippy -p axum_sse_notify -p lean_serve -p plain_axum_example \
  -p sse_notify_bench --all-targets --features "${layer_all}" -- -D warnings
step clippy-layer-types cargo clippy -p axum_sse_notify --no-default-features -- -D warnings
# Live events only (no inbox, no sqlx, no Redis): what a lean adopter builds.
step clippy-layer-live-only cargo clippy -p axum_sse_notify --all-targets --no-default-features \
  --features server -- -D warnings
# Service mode on a single process (no Redis): idempotency keys in memory.
step clippy-layer-service-no-redis cargo clippy -p axum_sse_notify --all-targets --no-default-features \
  --features service,sqlite -- -D warnings
# The layer as its users see it on docs.rs: no broken links, examples run.
step layer-docs env RUSTDOCFLAGS="-D warnings" cargo doc -p axum_sse_notify -p lean_serve \
  --no-deps --features "${layer_all}"
step layer-tests cargo test -p axum_sse_notify -p lean_serve -p plain_axum_example \
  --features "${layer_all}"
step layer-tests-no-redis cargo test -p axum_sse_notify --lib bus::
step layer-package cargo package -p lean_serve -p axum_sse_notify --allow-dirty --no-verify
step clippy-hydrate cargo clippy --no-default-features --features hydrate --lib \
  --target wasm32-unknown-unknown -- -D warnings
step rust-tests cargo test --no-default-features --features ssr
# The integration suite again with every connection served by hyper
# (`server.direct_responses = false`): both transports must behave alike.
step rust-tests-hyper env SERVER_DIRECT_RESPONSES=false \
  cargo test --no-default-features --features ssr --test '*'
step release-build cargo leptos build --release --precompress
step e2e e2e

rm -rf "${log_dir}"
echo "make test: PASSED in $(($(date +%s) - start))s (${passed[*]})"
