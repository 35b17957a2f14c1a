//! Rust↔JS crossings of the edge middleware, counted in Node on the built package: every call
//! from JavaScript into the wasm's exports and from the wasm into its imports (the glue's
//! bindings to `fetch`, timers, `Headers`...), while one Worker request is served and while one
//! batching window is delivered.
//!
//!   node bench/edge-crossings.mjs            (needs the built pkg/: make build)
//!
//! The scenario: `REQUESTS` requests within one window of `flushIntervalMs` 100, delivered in
//! one batch that the collector (tools/collector.mjs on 127.0.0.1) answers 200. Its delivery
//! wakes three times: when it starts (the window is forming), when the window is due, and when
//! the answer comes.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const REQUESTS = 10;
const WAKES = 3;

/** Counts crossings in the wasm instances made from now on; returns the live counters. */
function countCrossings() {
  const counts = { intoWasm: 0, outOfWasm: 0 };
  const Real = WebAssembly.Instance;
  WebAssembly.Instance = function (module, imports) {
    for (const ns of Object.values(imports)) {
      for (const [name, f] of Object.entries(ns)) {
        if (typeof f == 'function') ns[name] = function (...args) { counts.outOfWasm++; return f.apply(this, args); };
      }
    }
    const instance = new Real(module, imports);
    const exports = {};
    for (const [name, v] of Object.entries(instance.exports)) {
      exports[name] = typeof v == 'function' ? (...args) => (counts.intoWasm++, v(...args)) : v;
    }
    return { exports };
  };
  return counts;
}

export async function edgeCrossings({ root = ROOT, collector } = {}) {
  const counts = countCrossings();
  const { initSync, withTelemetry } = await import(pathToFileURL(path.join(root, 'pkg', 'edge.js')).href);
  initSync({ module: fs.readFileSync(path.join(root, 'pkg', 'spool_edge_bg.wasm')) });
  const total = () => counts.intoWasm + counts.outOfWasm;
  const app = withTelemetry(
    { fetch: () => new Response('ok') },
    { endpoint: `${collector.url}/batch/`, apiKey: 'phc_bench', flushIntervalMs: 100 },
  );
  const handed = [];
  const ctx = { waitUntil: (p) => handed.push(p) };
  // The first request makes the isolate's coalescer: measured apart.
  const first = total();
  await app.fetch(new Request('https://bench.example/0'), {}, ctx);
  const firstRequest = total() - first;
  await Promise.all(handed.splice(0));
  const perRequest = [];
  let window = 0;
  for (let i = 0; i < REQUESTS; i++) {
    const before = total();
    await app.fetch(new Request(`https://bench.example/${i}`), {}, ctx);
    perRequest.push(total() - before);
    if (i == 0) window = total();
  }
  await Promise.all(handed);
  const delivery = total() - window - perRequest.slice(1).reduce((a, b) => a + b, 0);
  return {
    firstRequest,
    perRequest: perRequest.slice(1).reduce((a, b) => a + b, 0) / (REQUESTS - 1),
    leaderRequest: perRequest[0],
    delivery,
    perWake: delivery / WAKES,
    into: counts.intoWasm,
    outOf: counts.outOfWasm,
  };
}

if (import.meta.url == pathToFileURL(process.argv[1]).href) {
  const { startCollector } = await import('../tools/collector.mjs');
  const collector = await startCollector({ port: 0, host: '127.0.0.1' });
  try {
    const r = await edgeCrossings({ collector });
    const events = collector.log().batches.reduce((n, b) => n + (b.accepted ? b.body.batch.length : 0), 0);
    console.log(`edge crossings (JS→wasm + wasm→JS): a joining request ${r.perRequest.toFixed(1)}, ` +
      `the leading request ${r.leaderRequest}, one window's delivery ${r.delivery} ` +
      `(${r.perWake.toFixed(1)} per wake, ${WAKES} wakes); the isolate's first request ${r.firstRequest}; ` +
      `${events} events delivered in ${collector.log().batches.length} requests`);
  } finally {
    await collector.close();
  }
}
