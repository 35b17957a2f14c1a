//! The page's wasm by the crate its code comes from and by spool module, with twiggy
//! (`cargo install twiggy`), under the package's gzipped size against the budget.
//!
//!   make build && node bench/crate-sizes.mjs [repo-dir]
//!
//! `make bench` puts the same tables in BENCHMARKS.md (figure 2, through `measureCode`).
//!
//! `make build`'s wasm has no names left, so this takes the release wasm it was made from
//! (target/wasm32-unknown-unknown/release/spool.wasm), runs wasm-bindgen keeping the names and
//! wasm-opt with `make build`'s passes plus `-g`, and sums twiggy's shallow bytes (raw, not
//! gzipped) per crate and per module. Inlined code counts where it was inlined to (a serde
//! visitor inside `config::read` counts as the shell's), so the figures are a guide; the names
//! section is stripped from the shipped wasm.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BUDGET_GZIP, measureSizes } from './sizes.mjs';

// First match wins.
const CRATES = [
  [/serde_wasm_bindgen/, 'serde-wasm-bindgen'],
  [/serde_core|serde::|_::<impl serde|Serialize|Deserialize|__FieldVisitor|__Visitor/, 'serde (derives, core)'],
  [/gloo_timers/, 'gloo-timers'],
  [/web_sys/, 'web-sys'],
  [/js_sys::futures|wasm_bindgen_futures|JsFuture|future_to_promise|spawn_local/, 'wasm-bindgen-futures'],
  [/futures_channel|oneshot/, 'futures-channel'],
  [/miniz_oxide/, 'miniz_oxide'],
  [/^crc::|<crc::/, 'crc'],
  [/flt2dec|fmt::float|bignum|core::fmt|Formatter|Display|pad_integral/, 'core::fmt'],
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

/**
 * The spool module a function belongs to: the first `spool::a::b::...` path its name
 * mentions (so a serde visitor derived for `engine::delivery::config::Config`, or the drop glue
 * of a shell closure, counts for that module), cut to the deepest prefix that is a module file
 * or folder under src/; an export's shim counts for the module of its class. Null for code
 * that names no spool path.
 */
function moduleOf(name, isModule) {
  const shim = name.match(/^(exporter|edgecoalescer)_\w+( multivalue shim)?$/);
  if (shim) return shim[1] === 'exporter' ? 'web::exporter' : 'web::edge';
  const m = name.match(/spool((?:::[a-z_][a-z0-9_]*)+)/);
  if (!m) return null;
  const segments = m[1].slice(2).split('::');
  let known = 0;
  while (known < segments.length && isModule(segments.slice(0, known + 1))) known += 1;
  return known === 0 ? 'lib' : segments.slice(0, known).join('::');
}

/** `(segments) => bool`: whether src/<segments>.rs or src/<segments>/ exists. */
function moduleTree(root) {
  const src = path.join(root, 'src');
  return (segments) => {
    const p = path.join(src, ...segments);
    return fs.existsSync(`${p}.rs`) || fs.existsSync(path.join(p, 'mod.rs'));
  };
}

/**
 * `{ crates: [[name, bytes]], modules: [[name, bytes]] }`, largest first: the page wasm's
 * shallow bytes by crate, and those of the functions naming a spool module by module (their
 * top two levels, `engine::wire`, `web::shell`; an engine folder's files besides, indented).
 * Throws when twiggy or the release wasm is missing.
 */
export function measureCode(root) {
  const wasm = path.join(root, 'target/wasm32-unknown-unknown/release/spool.wasm');
  if (!fs.existsSync(wasm)) throw new Error(`${wasm} is missing: run \`make build\` first`);
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'spool-crates-'));
  const bin = (name) => {
    const local = path.join(root, 'node_modules', '.bin', name);
    return fs.existsSync(local) ? local : name;
  };
  try {
    execFileSync('wasm-bindgen', ['--target', 'web', '--out-dir', out, '--keep-debug', wasm]);
    const named = path.join(out, 'named.wasm');
    execFileSync(bin('wasm-opt'), ['--flatten', '--rereloop', '-Oz', '--gufa', '-Oz', '--converge', '--low-memory-unused', '-g',
      path.join(out, 'spool_bg.wasm'), '-o', named]);
    const csv = execFileSync('twiggy', ['top', '-n', '100000', '--format', 'csv', named], { maxBuffer: 1 << 26 }).toString();

    const isModule = moduleTree(root);
    const crates = new Map();
    const modules = new Map();
    const add = (map, key, bytes) => map.set(key, (map.get(key) ?? 0) + bytes);
    for (const row of csv.trim().split('\n').slice(1)) {
      const m = row.match(/^"?(.*?)"?,(\d+),/);
      if (!m) continue;
      const bytes = Number(m[2]);
      add(crates, (CRATES.find(([re]) => re.test(m[1])) ?? [, 'other (core, alloc, std)'])[1], bytes);
      const module = moduleOf(m[1], isModule);
      if (!module) continue;
      const [top, sub, file] = module.split('::');
      add(modules, sub ? `${top}::${sub}` : top, bytes);
      if (file) add(modules, `  ${top}::${sub}::${file}`, bytes);
    }
    const sorted = (map) => [...map].sort((a, b) => b[1] - a[1]);
    // A folder's files follow its line.
    const tops = sorted(new Map([...modules].filter(([k]) => !k.startsWith(' '))));
    const files = sorted(new Map([...modules].filter(([k]) => k.startsWith(' '))));
    return {
      crates: sorted(crates),
      modules: tops.flatMap((t) => [t, ...files.filter(([k]) => k.trim().replace(/::[a-z0-9_]+$/, '') === t[0])]),
    };
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = path.resolve(process.argv[2] ?? '.');
  const { total, parts } = measureSizes(root).spool;
  // Node's zlib at level 9, as BENCHMARKS.md counts them; `gzip -9` differs by a few hundred bytes.
  for (const p of parts) console.log(`${String(p.gzip).padStart(8)}  ${p.name} (gzip level 9)`);
  const over = total.gzip - BUDGET_GZIP;
  console.log(`${String(total.gzip).padStart(8)}  the page package, gzipped: ` +
    `${over > 0 ? `${over} B over` : `${-over} B under`} the budget of ${BUDGET_GZIP} B`);
  const { crates, modules } = measureCode(root);
  console.log('\nThe page wasm by crate (raw bytes, names kept):');
  for (const [crate, bytes] of crates) console.log(`${String(bytes).padStart(8)}  ${crate}`);
  console.log('\nBy spool module (raw bytes; every function naming one, generic code included):');
  for (const [module, bytes] of modules) console.log(`${String(bytes).padStart(8)}  ${module}`);
}
