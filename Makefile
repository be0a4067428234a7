# The two commands: `make run` and `make test`. Everything they need is
# installed on first use (idempotently), from crates.io, npm and apt only.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := run

CARGO_LEPTOS_VERSION := 0.3.10
BINARYEN_VERSION := 132
# The wasm-bindgen CLI must match the crate in Cargo.lock exactly.
WASM_BINDGEN_VERSION := $(shell awk '/^name = "wasm-bindgen"$$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)

TOOLS_DIR := $(CURDIR)/.tools
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
SERVER_BIN := $(TARGET_DIR)/release/sse_notify
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

export PATH := $(TOOLS_DIR)/node_modules/.bin:$(HOME)/.cargo/bin:$(PATH)

.PHONY: run test bench charts fuzz tool-cargo-fuzz build tools tool-wasm-target tool-cargo-leptos tool-wasm-bindgen \
        tool-wasm-opt tool-chromium tool-nginx e2e-deps python-deps fmt lint clean

## run: install missing tools, build a release, serve on http://127.0.0.1:3000
run: build
	$(SERVER_BIN)

## build: release build of the server and the WASM bundle into target/site
build: tools
	cargo leptos build --release --precompress

## test: fmt, clippy (ssr + hydrate), Rust tests, Playwright against a release build
test: tools tool-chromium tool-nginx e2e-deps python-deps
	SERVER_BIN="$(SERVER_BIN)" EXAMPLES_PYTHON="$(PYTHON_ENV)/bin/python" scripts/test.sh

## bench: criterion micro-benchmarks + load generator vs. a naive baseline (BENCHMARKS.md)
bench:
	scripts/bench.sh

## charts: the table and charts of a bench run (RESULTS, default target/bench/results.jsonl) into benches/charts
RESULTS ?= target/bench/results.jsonl
charts:
	@test -x $(PYTHON_ENV)/bin/python || python3 -m venv $(PYTHON_ENV)
	@$(PYTHON_ENV)/bin/python -c 'import matplotlib' 2>/dev/null \
	  || $(PYTHON_ENV)/bin/pip install --quiet --disable-pip-version-check 'matplotlib>=3.8,<4'
	$(PYTHON_ENV)/bin/python scripts/charts.py $(RESULTS) benches/charts

## fuzz: each fuzz target for FUZZ_SECONDS (default 120) from its corpus in fuzz/corpus; not part of test
FUZZ_SECONDS ?= 120
FUZZ_TARGETS := head response
fuzz: tool-cargo-fuzz
	cd fuzz && for target in $(FUZZ_TARGETS); do \
	  RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$$target" "corpus/$$target" -- \
	    -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || exit 1; \
	done

# cargo-fuzz passes -Z flags to rustc: RUSTC_BOOTSTRAP=1 lets the stable toolchain take them.
tool-cargo-fuzz:
	@cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked

tools: tool-wasm-target tool-cargo-leptos tool-wasm-bindgen tool-wasm-opt

tool-wasm-target:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown \
	  || rustup target add wasm32-unknown-unknown

# cargo-leptos 0.3.11 needs rustc 1.96; 0.3.10 builds on 1.95 (~30 min, once).
tool-cargo-leptos:
	@cargo leptos --version 2>/dev/null | grep -q ' $(CARGO_LEPTOS_VERSION)$$' \
	  || cargo install cargo-leptos --locked --version $(CARGO_LEPTOS_VERSION)

# Without --locked: its lock file names a webpki-roots release crates.io no longer serves.
tool-wasm-bindgen:
	@test -n "$(WASM_BINDGEN_VERSION)" || { echo "wasm-bindgen not found in Cargo.lock" >&2; exit 1; }
	@wasm-bindgen --version 2>/dev/null | grep -q ' $(WASM_BINDGEN_VERSION)$$' \
	  || cargo install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION) --force

# Release builds run wasm-opt; cargo-leptos would download it from GitHub, which is unreachable.
tool-wasm-opt:
	@test -x $(TOOLS_DIR)/node_modules/.bin/wasm-opt \
	  || npm install --prefix $(TOOLS_DIR) --no-audit --no-fund --no-save binaryen@$(BINARYEN_VERSION)

# Debian's Chromium for Playwright (browser downloads are not possible here).
tool-chromium:
	@test -x /usr/bin/chromium \
	  || { $(SUDO) apt-get install -y chromium || { $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium; }; }

# nginx for the test that runs deploy/nginx.conf in front of two servers.
tool-nginx:
	@test -x /usr/sbin/nginx \
	  || { $(SUDO) apt-get install -y nginx || { $(SUDO) apt-get update && $(SUDO) apt-get install -y nginx; }; }

e2e-deps:
	@cd end2end && npm ci --no-audit --no-fund --loglevel=error

# The Python publisher and subscriber examples' packages (PyPI), in a venv.
PYTHON_ENV := $(TOOLS_DIR)/python
python-deps:
	@test -x $(PYTHON_ENV)/bin/python || python3 -m venv $(PYTHON_ENV)
	@$(PYTHON_ENV)/bin/pip install --quiet --disable-pip-version-check -r examples/python/requirements.txt

fmt:
	cargo fmt
	rustfmt --edition 2024 crates/axum_sse_notify/src/inbox/store/{claim,read,read_state,retention}.rs \
	  crates/axum_sse_notify/src/service/statements.rs

lint:
	cargo clippy --no-default-features --features ssr --all-targets -- -D warnings
	cargo clippy --no-default-features --features hydrate --lib --target wasm32-unknown-unknown -- -D warnings

clean:
	cargo clean
	rm -rf $(TOOLS_DIR) end2end/node_modules end2end/test-results data
