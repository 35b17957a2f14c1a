//! The wasm's code by the crate it comes from, with twiggy (`cargo install twiggy`).
//!
//!   make build && node bench/crate-sizes.mjs [repo-dir]
//!
//! `make build`'s wasm has no names left, so this takes the release wasm it was made from
//! (target/wasm32-unknown-unknown/release/spool.wasm), runs wasm-bindgen keeping the names and
//! wasm-opt with `make build`'s passes plus `-g`, and sums twiggy's shallow bytes per crate.
//! Inlined code counts where it was inlined to (a serde visitor inside `config::read` counts as
//! the shell's), so the figures are a guide; the names section is stripped from the shipped
//! wasm. Prints one line per crate, largest first.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const root = path.resolve(process.argv[2] ?? '.');
const out = fs.mkdtempSync(path.join(os.tmpdir(), 'spool-crates-'));
const bin = (name) => {
  const local = path.join(root, 'node_modules', '.bin', name);
  return fs.existsSync(local) ? local : name;
};
execFileSync('wasm-bindgen', ['--target', 'web', '--out-dir', out, '--keep-debug',
  path.join(root, 'target/wasm32-unknown-unknown/release/spool.wasm')]);
const named = path.join(out, 'named.wasm');
execFileSync(bin('wasm-opt'), ['--flatten', '--rereloop', '-Oz', '--gufa', '-Oz', '--converge', '--low-memory-unused', '-g',
  path.join(out, 'spool_bg.wasm'), '-o', named]);
const csv = execFileSync('twiggy', ['top', '-n', '100000', '--format', 'csv', named], { maxBuffer: 1 << 26 }).toString();

// First match wins.
const CRATES = [
  [/serde_wasm_bindgen/, 'serde-wasm-bindgen'],
  [/serde_core|serde::|_::<impl serde|Serialize|Deserialize|__FieldVisitor|__Visitor/, 'serde (derives, core)'],
  [/gloo_timers/, 'gloo-timers'],
  [/web_sys/, 'web-sys'],
  [/js_sys::futures|wasm_bindgen_futures|JsFuture|future_to_promise|spawn_local/, 'wasm-bindgen-futures'],
  [/futures_channel|oneshot/, 'futures-channel'],
  [/flt2dec|fmt::float|bignum|core::fmt|Formatter|Display|pad_integral/, 'core::fmt (float and Display, for serde errors)'],
  [/btree/, 'alloc BTreeMap'],
  [/talc|dlmalloc|allocator|__rust_alloc|__rdl/, 'allocator'],
  [/js_sys/, 'js-sys'],
  // Before wasm-bindgen's: spool's own closures (`spool::web::...::{{closure}}`) are its code.
  [/^spool::engine/, 'spool engine'],
  [/^spool::web/, 'spool web shell'],
  // An export's shim is where its method's body was inlined (`exporter_capture multivalue
  // shim` is mostly Exporter::capture): the shell's code more than wasm-bindgen's.
  [/^(exporter|edgecoalescer)_\w+( multivalue shim)?$/, 'spool web shell (exports, methods inlined)'],
  [/wasm_bindgen|__wbindgen|__wbg|shim|closure/, 'wasm-bindgen (runtime, imports, closures)'],
  [/function names|data names|producers|custom section/, '(names and metadata, stripped in pkg/)'],
  [/data segment/, 'data'],
];
const sums = new Map();
for (const row of csv.trim().split('\n').slice(1)) {
  const m = row.match(/^"?(.*?)"?,(\d+),/);
  if (!m) continue;
  const crate = (CRATES.find(([re]) => re.test(m[1])) ?? [, 'other (core, alloc, std)'])[1];
  sums.set(crate, (sums.get(crate) ?? 0) + Number(m[2]));
}
for (const [crate, bytes] of [...sums].sort((a, b) => b[1] - a[1])) {
  console.log(`${String(bytes).padStart(8)}  ${crate}`);
}
fs.rmSync(out, { recursive: true, force: true });
