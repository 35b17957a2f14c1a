//! Rust↔JS crossings of the page exporter, counted in headless Chromium on the built package:
//! every call from JavaScript into the wasm's exports and from the wasm into its imports (the
//! glue's bindings to `fetch`, `Headers`, timers, `JSON.stringify`...), per capture and per
//! request (from the request's start to its answer handled), with `compression: "gzip"`.
//!
//!   node bench/page-crossings.mjs [root]     (needs the built pkg/ under root: make build)
//!
//! The scenario: the page of the close tests (tests/e2e/pages/close.html, 200 ms linger)
//! captures `EVENTS` events of about 300 bytes in one task, then they are delivered in batches
//! of 100 to tools/collector.mjs on 127.0.0.1, which answers 200 at once.

import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const EVENTS = 1_000;

/** Installed in the page before its scripts: counts the crossings of every wasm instance. */
function countCrossings() {
  const counts = (window.__crossings = { intoWasm: 0, outOfWasm: 0 });
  const wrap = (imports) => {
    for (const ns of Object.values(imports ?? {})) {
      for (const [name, f] of Object.entries(ns)) {
        if (typeof f == 'function') ns[name] = function (...args) { counts.outOfWasm++; return f.apply(this, args); };
      }
    }
    return imports;
  };
  const exported = (instance) => {
    const exports = {};
    for (const [name, v] of Object.entries(instance.exports)) {
      exports[name] = typeof v == 'function' ? (...args) => (counts.intoWasm++, v(...args)) : v;
    }
    return { exports };
  };
  const { instantiate, instantiateStreaming } = WebAssembly;
  WebAssembly.instantiate = async (source, imports) => {
    const r = await instantiate(source, wrap(imports));
    return r instanceof WebAssembly.Instance ? exported(r) : { module: r.module, instance: exported(r.instance) };
  };
  WebAssembly.instantiateStreaming = async (source, imports) => {
    const r = await instantiateStreaming(source, wrap(imports));
    return { module: r.module, instance: exported(r.instance) };
  };
}

export async function pageCrossings({ root = ROOT } = {}) {
  const { launchBrowser, startCollector, waitFor } = await import(pathToFileURL(path.join(ROOT, 'tests', 'e2e', 'harness.mjs')).href);
  const site = await startCollector({ port: 0, host: '127.0.0.1', root });
  const browser = await launchBrowser();
  try {
    const context = await browser.newContext();
    await context.addInitScript(countCrossings);
    const page = await context.newPage();
    await page.goto(`${site.url}/tests/e2e/pages/close.html?${new URLSearchParams({ collector: site.url, run: 'crossings', fast: '1', persist: '0' })}`);
    await waitFor(() => page.evaluate(() => window.spoolReady === true).catch(() => false), { message: 'spool loaded' });
    const counted = () => page.evaluate(() => window.__crossings.intoWasm + window.__crossings.outOfWasm);
    const delivered = () => site.log().batches.filter((b) => b.accepted && b.body?.batch?.[0]?.properties?.run === 'crossings').length;
    const start = await counted();
    const perCapture = await page.evaluate((n) => {
      const before = window.__crossings.intoWasm + window.__crossings.outOfWasm;
      window.closeTest.capture(n);
      return (window.__crossings.intoWasm + window.__crossings.outOfWasm - before) / n;
    }, EVENTS);
    const captured = await counted();
    await waitFor(async () => (await page.evaluate(() => window.closeTest.stats().delivered)) === EVENTS, { message: 'delivered', timeoutMs: 20_000 });
    const requests = delivered();
    const perRequest = ((await counted()) - captured) / requests;
    return { perCapture, perRequest, requests, setUp: start };
  } finally {
    await browser.close();
    await site.close();
  }
}

if (import.meta.url == pathToFileURL(process.argv[1]).href) {
  const root = process.argv[2] ? path.resolve(process.argv[2]) : ROOT;
  const r = await pageCrossings({ root });
  console.log(`page crossings (JS→wasm + wasm→JS): ${r.perCapture.toFixed(2)} per capture, ` +
    `${r.perRequest.toFixed(1)} per request (${r.requests} requests of ${EVENTS / r.requests} events, gzip), ` +
    `${r.setUp} to load and set up the exporter`);
}
