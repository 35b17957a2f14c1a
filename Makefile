# Build and test spool. `make test` is the whole gate (what .ci/run runs); each step is also a
# target of its own. Every target runs scripts/setup.sh first, which is quick when nothing is
# missing.

SHELL := /bin/bash
# npm's binaryen comes first: wasm-pack picks the first wasm-opt on PATH, and an older one
# (Debian's v108) breaks the output.
export PATH := $(CURDIR)/node_modules/.bin:$(HOME)/.cargo/bin:$(PATH)

DEMO_PORT ?= 8000
# DEMO_HEADLESS=1 asks tools/demo.mjs to run its scenario in headless Chromium and exit.
DEMO_HEADLESS ?=
export DEMO_PORT DEMO_HEADLESS

# The steps share cargo's target dir and lock, and `test` must stop at the first failure in
# the order written.
.NOTPARALLEL:
.PHONY: setup build lint check test-native test-browser test-e2e test-edge test-demo test-plain test-package test demo bench clean

setup:
	scripts/setup.sh

# The package build recompiles std with the crate (rust-src) so that a panic aborts at once:
# std's panic and formatting machinery then stays out of the wasm (about 3.4 KB gzipped). Only
# this step gets these flags: set for every cargo call, they would make each one (tests,
# clippy, fuzz) rebuild from scratch. RUSTC_BOOTSTRAP lets the stable compiler take the -Z
# flags, as for `make fuzz`; it also switches symbol names to the longer v0 mangling, which
# would show in the wasm's export names and the glue (+100 bytes gzipped), so legacy is asked for.
# With panics aborting, nothing prints a `{:?}` or a source location, so their code and strings
# go too (fmt-debug, location-detail: 240 bytes gzipped). Without reference types, wasm-bindgen
# keeps JS objects in a table of its glue rather than in a wasm externref table: the glue grows
# by 250 bytes gzipped and the wasm shrinks by 740 (and runs on older browsers too). std's own
# feature optimize_for_size picks core's smaller integer formatting and sorting (670 bytes
# gzipped).
BUILD_STD := RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zunstable-options -Cpanic=immediate-abort \
  -Csymbol-mangling-version=legacy -Zfmt-debug=none -Zlocation-detail=none \
  -Ctarget-feature=-reference-types"
BUILD_STD_CRATES := -Z build-std=std,panic_abort -Z build-std-features=optimize_for_size
# Two wasm builds: the edge middleware's (feature `edge`, with the EdgeCoalescer edge.js wires
# Workers to) first, into target/pkg-edge as spool_edge.js / spool_edge_bg.wasm, then the page's,
# without it, into pkg/; finish-pkg.mjs copies the edge's files beside the page's. The page's is
# built last so that target/wasm32-unknown-unknown/release/spool.wasm is its (for
# bench/crate-sizes.mjs).
build: setup
	rm -rf pkg target/pkg-edge # wasm-bindgen leaves the snippets of an earlier build in place
	$(BUILD_STD) wasm-pack build . --target web --release --no-pack --out-dir target/pkg-edge \
	  --out-name spool_edge -- --features edge $(BUILD_STD_CRATES)
	$(BUILD_STD) wasm-pack build . --target web --release --out-dir pkg -- $(BUILD_STD_CRATES)
	node scripts/minify.mjs target/pkg-edge spool_edge
	node scripts/minify.mjs pkg
	node scripts/finish-pkg.mjs pkg target/pkg-edge

# Formatting, and clippy on both targets: the web shell only compiles for wasm32, the edge
# middleware's part of it only with the feature `edge`, and a Rust app's build leaves out the
# JavaScript API (the feature `js`).
lint: setup
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --target wasm32-unknown-unknown -- -D warnings
	cargo clippy --all-targets --target wasm32-unknown-unknown --features edge -- -D warnings
	cargo clippy --lib --target wasm32-unknown-unknown --no-default-features --features allocator -- -D warnings

# A contributor's gate before a commit, a few minutes on a warm machine: the lints, the native
# tests, the package build and one browser smoke test. `make test` is the whole gate.
check: lint test-native build
	node --test tests/e2e/browser-smoke.test.mjs

# The engine and its simulations, natively.
test-native: setup
	cargo test

# The crate's wasm-bindgen tests in headless Chromium (/usr/bin/chromedriver, webdriver.json).
test-browser: setup
	wasm-pack test --headless --chrome

# Headless Chromium and workerd against tools/collector.mjs, using the built pkg/.
test-e2e: build
	node --test tests/e2e/

# The edge middleware in workerd (miniflare), offline: the example Worker bundled by
# `wrangler deploy --dry-run` (which prints the upload size), against tools/collector.mjs.
test-edge: build
	node --test tests/edge/

# The demo's scripted scenario in headless Chromium: burst delivered, 429 honoured, none lost.
test-demo: build
	node tools/demo.mjs --headless

# What a user of the crate builds: a plain `wasm-pack build --target web --release` (no std
# rebuild, no minify.mjs), in a target dir of its own so that it does not rebuild `make
# build`'s; then the package captures, flushes and shuts down in Node. Then a Rust app's build: the feature `js` off, whose bindings must carry none of the
# JavaScript API.
test-plain: setup
	rm -rf target/pkg-plain target/pkg-rust-app
	CARGO_TARGET_DIR=target/plain wasm-pack build . --target web --release --out-dir target/pkg-plain
	node tests/plain-build.mjs target/pkg-plain
	CARGO_TARGET_DIR=target/plain wasm-pack build . --target web --release --no-pack \
	  --out-dir target/pkg-rust-app -- --no-default-features --features allocator
	node tests/package/rust-app-bindings.mjs target/pkg-rust-app

# The package as a user installs it (`npm pack` of pkg/): tsc (strict, no skipLibCheck) on a
# page, the esbuild way and a Worker with TypeScript 7 and 5.9; Node with initSync; and a tiny
# page built by Vite, webpack and esbuild, loaded in headless Chromium against the collector;
# the page package's gzipped size against its ceiling (tests/package/size.test.mjs).
test-package: build
	node --test tests/package/

test: lint test-native fuzz build test-browser test-e2e test-edge test-demo test-plain test-package

# spool beside posthog-js and a plain-JS floor (capture cost, size, requests, latency, memory,
# edge CPU) in headless Chromium and workerd; prints the tables and writes BENCHMARKS.md. Not
# part of `test`: timings are noisy. `node bench/run.mjs --quick` is the same code in a minute.
bench: build
	command -v twiggy >/dev/null || cargo install twiggy --locked # figure 2's wasm by crate
	node bench/run.mjs

# Serves the repository so the demo page is at /www/; tools/demo.mjs, once it exists, runs the
# scenario itself (and reads DEMO_PORT and DEMO_HEADLESS).
demo: build
	@if [[ -f tools/demo.mjs ]]; then \
	  exec node tools/demo.mjs; \
	else \
	  echo "demo: http://127.0.0.1:$(DEMO_PORT)/www/"; \
	  exec node tools/collector.mjs --port $(DEMO_PORT) --host 127.0.0.1; \
	fi

# libFuzzer over the Retry-After parser, the properties validator, the body encoder and the
# config validation, from the committed corpus in fuzz/corpus/ (new finds go to
# target/fuzz-new/). A fixed seed and run count keep it reproducible and
# bounded in `make test`; `make fuzz FUZZ_RUNS=-1 FUZZ_SECONDS=600` searches for longer.
# RUSTC_BOOTSTRAP lets cargo-fuzz pass its -Z flags to the stable compiler; no sanitizer is
# needed for safe Rust.
FUZZ_RUNS ?= 1000000
FUZZ_SECONDS ?= 0
fuzz: setup
	for target in retry_after json_object body config; do \
	  mkdir -p target/fuzz-new/$$target; \
	  RUSTC_BOOTSTRAP=1 cargo fuzz run $$target --sanitizer none \
	    target/fuzz-new/$$target fuzz/corpus/$$target -- \
	    -seed=1 -runs=$(FUZZ_RUNS) -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || exit 1; \
	done

# The engine soak: a million events per seed through the simulation's random faults, memory
# bounds checked after every step (`make test` runs the same simulation at 2,000 per seed).
# Then the same in headless Chromium: 20,000 events through the chaos collector, and two
# rounds of 100,000 events with the wasm memory measured (`make test` runs 5,000 and 20,000).
soak: build
	SPOOL_SIM_SEEDS=5 SPOOL_SIM_EVENTS=1000000 cargo test --release --test simulation -- --nocapture
	SPOOL_CHAOS_EVENTS=20000 SPOOL_SOAK_EVENTS=100000 node --test tests/e2e/chaos.test.mjs tests/e2e/soak.test.mjs

clean:
	cargo clean
	rm -rf pkg
