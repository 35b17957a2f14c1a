#!/usr/bin/env bash
# Installs what building and testing spool needs, and nothing that is already there.
#
# Assumes a Debian machine with rustup/cargo, node and npm, run as root (apt-get). Every step
# checks first, so a second run on a ready machine takes about a second: `make test` runs it
# every time.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf 'setup: %s\n' "$*"; }

# --- Rust: the toolchain rust-toolchain.toml names, the wasm target, the components -----
# With RUSTUP_AUTO_INSTALL=0 (as on these machines) rustup will not fetch the named release by
# itself, and every cargo call in this folder fails until it exists. Where the installed
# `stable` is that release, the name is given to it (rustup's own layout: a toolchain is a
# folder under $RUSTUP_HOME/toolchains; `rustup toolchain link` refuses release names);
# otherwise rustup installs it.
pinned=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)
if ! rustup toolchain list | grep -q "^$pinned-"; then
  host=$(rustup run stable rustc -vV | sed -n 's/^host: //p')
  toolchains="${RUSTUP_HOME:-$HOME/.rustup}/toolchains"
  if [[ "$(rustup run stable rustc --version)" == "rustc $pinned "* ]]; then
    log "naming the installed stable toolchain $pinned"
    ln -s "$toolchains/stable-$host" "$toolchains/$pinned-$host"
  else
    log "installing toolchain $pinned"
    RUSTUP_AUTO_INSTALL=1 rustup toolchain install "$pinned" --profile minimal
  fi
fi
installed_targets=$(rustup target list --installed)
if ! grep -qx 'wasm32-unknown-unknown' <<<"$installed_targets"; then
  log "adding target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi
# `cargo clippy --version` fails when the component is missing, even though the proxy exists.
if ! cargo clippy --version >/dev/null 2>&1 || ! cargo fmt --version >/dev/null 2>&1; then
  log "adding components clippy rustfmt"
  rustup component add clippy rustfmt
fi
# std's source: `make build` recompiles std for the wasm so that panics abort at once (smaller).
if ! rustup component list --installed | grep -q '^rust-src'; then
  log "adding component rust-src"
  rustup component add rust-src
fi

# --- wasm-pack: from crates.io (the npm package downloads a prebuilt binary, which fails here)
if ! wasm-pack --version >/dev/null 2>&1; then
  log "installing wasm-pack"
  cargo install wasm-pack
fi

# --- cargo-fuzz: runs the libFuzzer targets in fuzz/ (on the stable toolchain, see Makefile).
if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz"
  cargo install cargo-fuzz
fi

# --- wasm-bindgen CLI: must match the wasm-bindgen crate exactly, or the generated glue and
# the wasm disagree at runtime. wasm-pack would fetch a binary itself; having the right one on
# PATH stops it from trying.
wb_version=0.2.130
if [[ -f Cargo.lock ]]; then
  # The line after `name = "wasm-bindgen"` is its version.
  locked=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
  wb_version=${locked:-$wb_version}
fi
if [[ "$(wasm-bindgen --version 2>/dev/null || true)" != "wasm-bindgen $wb_version"* ]]; then
  log "installing wasm-bindgen-cli $wb_version"
  cargo install wasm-bindgen-cli --version "=$wb_version"
fi

# --- Chromium and its driver: Debian's, because Playwright's downloaded browsers fail here.
if [[ ! -x /usr/bin/chromium || ! -x /usr/bin/chromedriver ]]; then
  log "installing chromium chromium-driver"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y chromium chromium-driver
fi

# --- Firefox ESR: Debian's, driven by puppeteer-core over WebDriver BiDi (no geckodriver, no
# downloaded browser). bench/pagehide.mjs measures page-close delivery in it.
if [[ ! -x /usr/bin/firefox-esr ]]; then
  log "installing firefox-esr"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y firefox-esr
fi

# --- WebKitGTK: Debian's WebKitWebDriver (WebDriver classic) and MiniBrowser, for the
# page-close cases in WebKit (tests/e2e/webkit.mjs). MiniBrowser has no headless mode, so the
# tests run it on a virtual display of their own (Xvfb).
if [[ ! -x /usr/bin/WebKitWebDriver || ! -x /usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser \
      || ! -x /usr/bin/Xvfb ]]; then
  log "installing webkit2gtk-driver xvfb"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y webkit2gtk-driver xvfb
fi

# --- npm dev tools: playwright-core, puppeteer-core (Firefox over WebDriver BiDi), binaryen (wasm-opt >= 132; Debian's v108 breaks the
# output), esbuild (minifies the package's JavaScript), miniflare and wrangler (pinned to the
# last releases that run on Node 20), and for `make test-package` Vite, webpack and TypeScript
# (7, and 5.9 as `typescript-5`), which build and type-check the fixtures in tests/package/.
# npm keeps its own copy of the lockfile in node_modules; when that is newer than both
# package files, the install is current and `npm ci` (which wipes node_modules) is skipped.
if [[ -f package-lock.json ]]; then
  if [[ ! -f node_modules/.package-lock.json \
        || package-lock.json -nt node_modules/.package-lock.json \
        || package.json -nt node_modules/.package-lock.json \
        || ! -x node_modules/.bin/wasm-opt ]]; then
    log "npm ci"
    npm ci --no-audit --no-fund
  fi
else
  log "npm install (no lockfile yet)"
  npm install --no-audit --no-fund
fi

# --- The official OTLP protobuf bindings: the tests parse every OTLP body with them
# (tools/otlp_parse.py, json_format.Parse with unknown fields refused), at the versions
# requirements.txt pins.
if ! python3 -c 'import google.protobuf, opentelemetry.proto.collector.logs.v1.logs_service_pb2' \
    >/dev/null 2>&1; then
  log "pip install -r requirements.txt"
  python3 -m pip install --quiet -r requirements.txt
fi

log "ready: $(wasm-pack --version), $(wasm-bindgen --version), $(node_modules/.bin/wasm-opt --version)"
