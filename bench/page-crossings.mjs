//! Rust↔JS crossings of the page exporter, counted in headless Chromium on the built package:
//! every call from JavaScript into the wasm's exports and from the wasm into its imports (the
//! glue's bindings to `fetch`, `Headers`, timers, `JSON.stringify`...), per capture and per
//! request (from the request's start to its answer handled), with `compression: "gzip"`.
//!
//!   node bench/page-crossings.mjs [root]     (needs the built pkg/ under root: make build)
//!
//! The scenario: the page of the close tests (tests/e2e/pages/close.html, 200 ms linger), with
//! tools/collector.mjs on 127.0.0.1 answering 200 at once. Steady: 100 events of about 300
//! bytes captured and flushed, then delivered, ten times. A burst: `EVENTS` captured in one
//! task, delivered in batches of 100, four at a time (`maxInFlight`); where the page has
//! `fetchLater`, the batches that wait for a slot are armed as deferred requests meanwhile.

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
    const isDelivered = (n) => waitFor(async () => (await page.evaluate(() => window.closeTest.stats().delivered)) === n, { message: 'delivered', timeoutMs: 20_000 });
    // Steady: one batch at a time, each delivered before the next is captured.
    const steadyFrom = await counted();
    let captures = 0;
    for (let i = 1; i <= 10; i++) {
      captures += await page.evaluate(() => {
        const before = window.__crossings.intoWasm + window.__crossings.outOfWasm;
        window.closeTest.capture(100);
        const crossed = window.__crossings.intoWasm + window.__crossings.outOfWasm - before;
        window.closeTest.flush();
        return crossed;
      });
      await isDelivered(i * 100);
    }
    const steadyPerRequest = ((await counted()) - steadyFrom - captures) / delivered();
    const before = await page.evaluate(() => window.closeTest.stats().delivered);
    const requestsBefore = delivered();
    const burstFrom = await counted();
    const perCapture = await page.evaluate((n) => {
      const before = window.__crossings.intoWasm + window.__crossings.outOfWasm;
      window.closeTest.capture(n);
      return (window.__crossings.intoWasm + window.__crossings.outOfWasm - before) / n;
    }, EVENTS);
    await isDelivered(before + EVENTS);
    const requests = delivered() - requestsBefore;
    // The requests' crossings: everything since the burst began but the captures' own.
    const perRequest = ((await counted()) - burstFrom - perCapture * EVENTS) / requests;
    return { perCapture, perRequest, requests, steadyPerRequest, setUp: start };
  } finally {
    await browser.close();
    await site.close();
  }
}

if (import.meta.url == pathToFileURL(process.argv[1]).href) {
  const root = process.argv[2] ? path.resolve(process.argv[2]) : ROOT;
  const r = await pageCrossings({ root });
  console.log(`page crossings (JS→wasm + wasm→JS): ${r.perCapture.toFixed(2)} per capture; ` +
    `per request ${r.steadyPerRequest.toFixed(1)} steady (one batch at a time, its flush() call included), ` +
    `${r.perRequest.toFixed(1)} in a burst (${r.requests} requests of ${EVENTS / r.requests} events, gzip); ` +
    `${r.setUp} to load and set up the exporter`);
}
