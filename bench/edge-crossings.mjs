//! Rust↔JS crossings of the edge middleware, counted in Node on the built package: every call
//! from JavaScript into the wasm's exports and from the wasm into its imports (the glue's
//! bindings to `fetch`, timers, `Headers`...), while one Worker request is served and while one
//! batching window is delivered; and apart, the calls `edge.js` makes to the `EdgeCoalescer`'s
//! methods (its API, the exports named `edgecoalescer_*`).
//!
//!   node bench/edge-crossings.mjs [root]     (needs the built pkg/ under root: make build)
//!
//! SPOOL_BENCH_COMPRESSION=none sends the bodies plain (the default is the exporter's, gzip).
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
  const counts = { intoWasm: 0, outOfWasm: 0, api: 0 };
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
      const api = name.startsWith('edgecoalescer_');
      exports[name] = typeof v == 'function' ? (...args) => (counts.intoWasm++, (counts.api += api), v(...args)) : v;
    }
    return { exports };
  };
  return counts;
}

export async function edgeCrossings({ root = ROOT, collector, compression = 'gzip' } = {}) {
  const counts = countCrossings();
  const { initSync, withTelemetry } = await import(pathToFileURL(path.join(root, 'pkg', 'edge.js')).href);
  initSync({ module: fs.readFileSync(path.join(root, 'pkg', 'spool_edge_bg.wasm')) });
  const total = () => counts.intoWasm + counts.outOfWasm;
  const api = () => counts.api;
  const app = withTelemetry(
    { fetch: () => new Response('ok') },
    { endpoint: `${collector.url}/batch/`, apiKey: 'phc_bench', flushIntervalMs: 100, compression },
  );
  const handed = [];
  const ctx = { waitUntil: (p) => handed.push(p) };
  // The first request makes the isolate's coalescer: measured apart.
  const first = total();
  await app.fetch(new Request('https://bench.example/0'), {}, ctx);
  const firstRequest = total() - first;
  await Promise.all(handed.splice(0));
  const perRequest = [];
  const apiPerRequest = [];
  let window = 0;
  let windowApi = 0;
  for (let i = 0; i < REQUESTS; i++) {
    const [before, beforeApi] = [total(), api()];
    await app.fetch(new Request(`https://bench.example/${i}`), {}, ctx);
    perRequest.push(total() - before);
    apiPerRequest.push(api() - beforeApi);
    if (i == 0) [window, windowApi] = [total(), api()];
  }
  await Promise.all(handed);
  const sum = (xs) => xs.reduce((a, b) => a + b, 0);
  const delivery = total() - window - sum(perRequest.slice(1));
  const deliveryApi = api() - windowApi - sum(apiPerRequest.slice(1));
  return {
    firstRequest,
    perRequest: sum(perRequest.slice(1)) / (REQUESTS - 1),
    leaderRequest: perRequest[0],
    delivery,
    perWake: delivery / WAKES,
    api: { perRequest: sum(apiPerRequest.slice(1)) / (REQUESTS - 1), leaderRequest: apiPerRequest[0], perWake: deliveryApi / WAKES },
    into: counts.intoWasm,
    outOf: counts.outOfWasm,
  };
}

if (import.meta.url == pathToFileURL(process.argv[1]).href) {
  const { startCollector } = await import('../tools/collector.mjs');
  const root = process.argv[2] ? path.resolve(process.argv[2]) : ROOT;
  const collector = await startCollector({ port: 0, host: '127.0.0.1' });
  try {
    const r = await edgeCrossings({ root, collector, compression: process.env.SPOOL_BENCH_COMPRESSION });
    const events = collector.log().batches.reduce((n, b) => n + (b.accepted ? b.body.batch.length : 0), 0);
    console.log(`edge crossings (JS→wasm + wasm→JS): a joining request ${r.perRequest.toFixed(1)}, ` +
      `the leading request ${r.leaderRequest}, one window's delivery ${r.delivery} ` +
      `(${r.perWake.toFixed(1)} per wake, ${WAKES} wakes); the isolate's first request ${r.firstRequest}; ` +
      `${events} events delivered in ${collector.log().batches.length} requests`);
    console.log(`edge.js calls to EdgeCoalescer methods: a joining request ${r.api.perRequest.toFixed(1)}, ` +
      `the leading request ${r.api.leaderRequest}, per wake ${r.api.perWake.toFixed(1)}`);
  } finally {
    await collector.close();
  }
}
