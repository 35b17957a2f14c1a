//! Figures 7 and 8: what gets out when a page holding N events leaves (at close and from the
//! next load), and bytes on the wire with compression, spool beside posthog-js. bench/run.mjs
//! calls these; the page is bench/pages/bench.html on the bench's own collector
//! (tools/collector.mjs, origin A) and every batch goes to `startSink()` (origin B,
//! cross-origin as PostHog is to a site), which decodes what tools/collector.mjs does not:
//! gzip bodies recognised by their magic bytes (spool's `compression: "gzip"`, posthog-js's
//! gzip-js, both `text/plain` with no header) and posthog-js's `data=<base64>` form (what it
//! sends with `sendBeacon` at `pagehide`).
//!
//! Figure 7 runs in headless Chromium (playwright-core, latency by CDP), and in Firefox ESR
//! (puppeteer-core over WebDriver BiDi, tests/e2e/firefox.mjs) and WebKitGTK's MiniBrowser
//! (WebDriver classic under Xvfb, tests/e2e/webkit.mjs), latency there by firefox.mjs's
//! delaying proxy; the page leaves by a same-site navigation, a cross-site one, or its tab
//! closing.
//!
//! The same code measures spool before and after it learns `persist` and `compression`:
//! `pkgSupports(root)` reads them from pkg/spool.d.ts, and spool is given them only when the
//! built package knows them; otherwise the figures show what today's package does.

import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import zlib from 'node:zlib';
import { enableGzipJs } from './browser.mjs';
import { startProxy } from '../tests/e2e/close-cases.mjs';
import { summary } from './stats.mjs';

/**
 * Which of the page-close config keys the built package knows, from the ExporterConfig of
 * pkg/spool.d.ts (generated from the same schema as the config reader): `{ persist, compression }`.
 */
export function pkgSupports(root) {
  let dts = '';
  try {
    dts = fs.readFileSync(path.join(root, 'pkg', 'spool.d.ts'), 'utf8');
  } catch {}
  const config = dts.slice(dts.indexOf('interface ExporterConfig'), dts.indexOf('}', dts.indexOf('interface ExporterConfig')));
  return {
    persist: /\bpersist\?\s*:/.test(config),
    compression: /\bcompression\?\s*:/.test(config),
  };
}

/** spool's options for a contender: `wanted` keys the package does not know are left out. */
export function spoolOptions(supports, wanted) {
  return Object.fromEntries(Object.entries(wanted).filter(([k]) => !(k in supports) || supports[k]));
}

// --- the sink: a collector that decodes every body -----------------------------------------

/** Decodes a batch body as PostHog's capture would: gzip by magic bytes, the base64 form, JSON. */
export function decodeBody(buf, url) {
  let b = buf;
  if (b[0] === 0x1f && b[1] === 0x8b) b = zlib.gunzipSync(b);
  let s = b.toString('utf8');
  if (s.startsWith('data=')) {
    s = decodeURIComponent(s.slice(5).replace(/\+/g, ' '));
    if (/compression=base64/.test(url) || !/^[[{]/.test(s)) s = Buffer.from(s, 'base64').toString('utf8');
  }
  return JSON.parse(s);
}

/** The events of a decoded body: PostHog's `{batch}`, posthog-js's array, or one event. */
function eventsOf(body) {
  if (Array.isArray(body?.batch)) return body.batch;
  if (Array.isArray(body)) return body;
  return body && typeof body === 'object' && 'event' in body ? [body] : [];
}

/** Who sent a body: spool's `api_key`, posthog-js's `token` in each event's properties. */
function keyOf(body) {
  return body?.api_key ?? eventsOf(body)[0]?.properties?.token ?? '?';
}

/**
 * How a request reached the sink, as a collector can tell: `deferred` for a spool body without
 * `sent_at`, in the body or as the URL's `_` (a `fetchLater` request: spool cannot know when
 * the browser sends it, so it stamps none), `beacon` for `Sec-Fetch-Mode: no-cors` (what
 * `sendBeacon` with a `text/plain` body sends; a `fetch`, keepalive or not, says `cors`),
 * `fetch` otherwise.
 */
export const PATHS = ['fetch', 'beacon', 'deferred'];

function deliveryPath(req, body) {
  const stamped = body && typeof body === 'object' && ('sent_at' in body || /[?&]_=/.test(req.url));
  if (body && typeof body === 'object' && 'api_key' in body && !stamped) return 'deferred';
  return req.headers['sec-fetch-mode'] === 'no-cors' ? 'beacon' : 'fetch';
}

/**
 * Starts the sink on 127.0.0.1: answers every POST `{"status":1}` after `delayMs` (the plan's
 * default, as tools/collector.mjs's `control.plan([], { delayMs })`), with CORS for any
 * origin; or, while the plan's `status` is an error (`control.plan([], { status: 503 })`),
 * refuses every POST with it at once, its events not counted as arrived. Its `log(since)` has
 * the shape bench/browser.mjs's Tally reads from tools/collector.mjs
 * (`{ batches: [{ seq, url, path, bytes, receivedAt, body }] }`, body decoded), and
 * `byKey(key)` counts what one sender delivered: requests, wire bytes, events, distinct
 * uuids, the time of the last arrival, and per `deliveryPath` the distinct uuids it carried
 * first (`first`).
 */
export async function startSink() {
  // `pending`: replies held back by `delayMs`, each by its timer; given at once when the
  // delay goes back to 0.
  const state = { seq: 0, batches: [], keys: new Map(), delayMs: 0, status: 200, pending: new Map() };
  const key = (k) => {
    if (!state.keys.has(k)) state.keys.set(k, { requests: 0, bytes: 0, events: 0, uuids: new Set(), undecoded: 0, last: 0, first: Object.fromEntries(PATHS.map((p) => [p, 0])) });
    return state.keys.get(k);
  };
  const server = http.createServer((req, res) => {
    const cors = {
      'Access-Control-Allow-Origin': req.headers.origin ?? '*',
      'Access-Control-Allow-Headers': '*',
      'Access-Control-Allow-Methods': 'POST, GET, OPTIONS',
      'Access-Control-Max-Age': '0',
    };
    if (req.method === 'OPTIONS') return res.writeHead(204, cors).end();
    const parts = [];
    req.on('data', (c) => parts.push(c));
    req.on('error', () => {});
    req.on('end', () => {
      const buf = Buffer.concat(parts);
      const now = Date.now();
      let body = null;
      try {
        body = decodeBody(buf, req.url);
      } catch {}
      const k = key(body ? keyOf(body) : '?');
      k.requests++;
      k.bytes += buf.length;
      k.last = now;
      if (!body) k.undecoded++;
      state.batches.push({ seq: ++state.seq, url: req.url, path: new URL(req.url, 'http://sink').pathname, bytes: buf.length, receivedAt: now, body, status: state.status });
      if (state.status >= 300) {
        return res.writeHead(state.status, { ...cors, 'Content-Type': 'application/json' }).end('{"error":"refused"}');
      }
      const via = deliveryPath(req, body);
      for (const e of eventsOf(body)) {
        k.events++;
        if (e?.uuid && !k.uuids.has(e.uuid)) {
          k.uuids.add(e.uuid);
          k.first[via]++;
        }
      }
      const reply = () => res.writeHead(200, { ...cors, 'Content-Type': 'application/json' }).end('{"status":1}');
      if (!state.delayMs) return reply();
      const timer = setTimeout(() => state.pending.delete(timer) && reply(), state.delayMs);
      timer.unref();
      state.pending.set(timer, reply);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    log: (since = 0) => ({ batches: state.batches.filter((b) => b.seq > since), preflights: 0 }),
    byKey: (k) => key(k),
    control: {
      plan(_plan, dflt) {
        state.status = dflt?.status ?? 200;
        state.delayMs = dflt?.delayMs ?? 0;
        if (state.delayMs) return;
        for (const [timer, reply] of state.pending) {
          clearTimeout(timer);
          reply();
        }
        state.pending.clear();
      },
      reset() {
        state.batches = [];
        state.keys.clear();
        state.seq = 0;
        state.delayMs = 0;
        state.status = 200;
      },
    },
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * One origin on 127.0.0.1 for the page and its collector, as a site that collects on its own
 * host: the page's files (GET and HEAD under the repository's folders) from `siteUrl`, every
 * other request from the sink at `sinkUrl`. A browser opens at most 6 HTTP/1.1 connections to
 * it (WebKit, Chromium), the navigation's included. Returns { url, close() }.
 */
export function startSameOrigin(siteUrl, sinkUrl) {
  const files = /^\/(bench|pkg|node_modules|tests|www)\//;
  return startProxy((req) => ((req.method === 'GET' || req.method === 'HEAD') && files.test(req.url) ? siteUrl : sinkUrl));
}

// --- figure 7: page close ------------------------------------------------------------------

/** The contenders of figure 7, given what the package supports. */
export function closeContenders(supports) {
  return [
    { id: 'spool', label: 'spool (defaults)', kind: 'spool', options: spoolOptions(supports, { persist: true, compression: 'gzip' }) },
    // Nothing kept for a next load: what went at close unanswered is not sent again, and what the
    // collector refused then is lost.
    { id: 'spool-nopersist', label: 'spool, `persist: false`', kind: 'spool', options: spoolOptions(supports, { persist: false, compression: 'gzip' }) },
    { id: 'posthog', label: 'posthog-js (no compression)', kind: 'posthog' },
    { id: 'posthog-gzip', label: 'posthog-js (gzip-js, as PostHog Cloud runs it)', kind: 'posthog', options: { disable_compression: false }, gzipJs: true },
  ];
}

/**
 * The browsers of figure 7. Chromium is the one bench/run.mjs launched (latency by CDP on each
 * page, as before); Firefox ESR and WebKit are launched here when a cell asks for them, by the
 * e2e harnesses, with latency through a delaying proxy in front of the page's origin and the
 * sink (neither has CDP's network emulation).
 */
export const ENGINES = {
  chromium: { id: 'chromium', label: 'Chromium', latencyVia: 'cdp' },
  firefox: { id: 'firefox', label: 'Firefox ESR', latencyVia: 'proxy', harness: '../tests/e2e/firefox.mjs' },
  webkit: { id: 'webkit', label: 'WebKit', latencyVia: 'proxy', harness: '../tests/e2e/webkit.mjs' },
};

/**
 * How the page leaves, each at the end of the task that captured the N events (a click after a
 * busy moment), and what the "next page's delay" is for it:
 * - `nav`: `location.href` to the next load of the bench page (same site); the delay is from
 *   that assignment to the next document's `load` event ended, both by the pages' wall clock.
 * - `cross`: `location.href` to a page of another site (the same server as http://localhost,
 *   while the bench page is on http://127.0.0.1); the delay as for `nav`, to that page's load.
 *   The driver then opens the bench page again in the same tab, for the next load.
 * - `tab`: the driver closes the tab as soon as the capturing task has returned
 *   (`runBeforeUnload` where the driver has it; WebKit's Close Window fires no
 *   `beforeunload`); the delay is from the close command to the driver seeing the tab gone.
 *   A tab of the site without a contender stays open throughout (WebDriver classic ends the
 *   session with its last window), and a new tab of the same context is the next load.
 */
export const WAYS = {
  nav: { id: 'nav', label: 'same-site navigation', delay: 'to the next page loaded' },
  cross: { id: 'cross', label: 'cross-site navigation', delay: 'to the other site\'s page loaded' },
  tab: { id: 'tab', label: 'tab closed', delay: 'to the tab gone' },
};

const PAGE = '/bench/pages/bench.html';
const BLANK = '/tests/e2e/pages/blank.html';
/**
 * In the `stalled` cells, how long the page holds the N behind a stalled collector before it
 * leaves: long enough for a second unanswered (spool packs a batch that waits that long).
 */
const STALL_MS = 2_000;
/** Events the collector answers for before the N are captured, in the `warm` cells. */
const WARM_EVENTS = 10;
/**
 * How long the next load waits for spool's events still missing: spool takes in a stored copy
 * whose page did not mark it gone once its writer has been silent for PERSIST_LIVE_MS (10 s,
 * src/engine/page/persist.rs), then sends it.
 */
const NEXT_LOAD_PATIENCE_MS = 13_000;
/** The most a navigation may take: posthog-js's `pagehide` can hold one for many seconds. */
const LEAVE_TIMEOUT_MS = 120_000;
/** Page errors that are the network's, not the contender's: requests cut off by the leaving. */
const NETWORK_ERROR = /NetworkError|Failed to fetch|net::ERR|Cross-Origin Request Blocked|Load failed|cancelled|access control checks/;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits until `k` has had no arrival for `quietMs` (and at least `minMs` since `t0`), at most `maxMs`. */
async function quiet(sink, key, t0, { quietMs = 1500, minMs = 2000, maxMs = 30_000 } = {}) {
  for (;;) {
    await sleep(100);
    const now = Date.now();
    const k = sink.byKey(key);
    if (now - t0 > maxMs) return;
    if (now - t0 >= minMs && (!k.last || now - k.last >= quietMs)) return;
  }
}

/**
 * Polls `fn(arg)` in the page until it returns something other than null, undefined or false,
 * and returns that. Works across a navigation in all three drivers: an evaluate that fails
 * because the document went is tried again.
 */
async function until(page, fn, arg, { timeoutMs = 30_000, message = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let v = null;
    try {
      v = await page.evaluate(fn, arg);
    } catch {}
    if (v !== null && v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`waited ${timeoutMs} ms for ${message}`);
    await sleep(50);
  }
}

/** The next document's `load` ended, less the `left` timestamp its URL carries (ms); null before. */
function loadedSinceLeft() {
  const left = Number(new URLSearchParams(location.search).get('left'));
  const [nav] = performance.getEntriesByType('navigation');
  if (!left || document.readyState !== 'complete' || !nav?.loadEventEnd) return null;
  return Math.round(performance.timeOrigin + nav.loadEventEnd - left);
}

/**
 * One run: a fresh browser context, the bench page with one contender (its page-lifecycle
 * listeners timed), `n` events captured in one task and the page leaving `way` at its end.
 * Once the sink is quiet, the distinct events it has are "at close". Then the bench page again
 * on its origin in the same context (the next load; for `nav`, the document the navigation
 * loaded), which reads the lifecycle timings the old page stored, sets up the same contender
 * (same key, same endpoint: spool's `new Exporter` sends what it stored) and flushes; once quiet
 * again, the distinct events are "with the next load". With `warm`, the collector first answers
 * a flush of `WARM_EVENTS` events (spool arms `fetchLater` only after a success); those are
 * left out of every count. With `stalled` (and `warm`), the collector then takes in bodies but
 * answers none, the N are captured and held `STALL_MS` before the page leaves, and the
 * collector answers again (everything held back at once) before the next load. With
 * `refusing`, the collector refuses every body with a 503 from the capture on (its events not
 * counted), and takes them again from the next load on.
 */
async function closeRun(engine, browser, origins, sink, contender, { way, n, latencyMs, warm, stalled, slowMs, refusing, runId }) {
  const apiKey = `${contender.id}-${runId}`;
  const spec = { kind: contender.kind, apiKey, endpoint: `${origins.sink}/batch/`, options: contender.options ?? {}, timeLifecycle: true };
  const benchUrl = `${origins.site}${PAGE}?run=${runId}`;
  const context = await browser.newContext();
  const errors = [];
  const open = async (page, url) => {
    if (latencyMs && engine.latencyVia === 'cdp') {
      const cdp = await context.newCDPSession(page);
      await cdp.send('Network.enable');
      await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: latencyMs, downloadThroughput: -1, uploadThroughput: -1 });
    }
    await page.goto(url);
    await until(page, () => window.benchReady === true, undefined, { message: 'the bench page' });
    return page;
  };
  const newPage = async () => {
    const page = await context.newPage();
    page.on('pageerror', (e) => errors.push(String(e?.stack ?? e)));
    page.on('console', (m) => {
      if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) errors.push(m.text());
    });
    return page;
  };
  const setup = async (page) => {
    await page.evaluate((s) => window.bench.setup(s), spec);
    if (contender.gzipJs) await page.evaluate(enableGzipJs);
  };
  try {
    if (way.id === 'tab') await (await newPage()).goto(`${origins.site}${BLANK}`);
    let page = await open(await newPage(), benchUrl);
    await setup(page);
    let warmed = 0;
    if (warm) {
      await page.evaluate((n) => window.bench.captureLoop({ n, chunk: n, start: 1_000_000 }), WARM_EVENTS);
      await page.evaluate(() => window.bench.flush());
      for (let i = 0; i < 100 && sink.byKey(apiKey).uuids.size < WARM_EVENTS; i++) await sleep(50);
      warmed = sink.byKey(apiKey).uuids.size;
    }
    if (stalled) {
      // From here the collector takes in every body and answers none (until the next load).
      sink.control.plan([], { delayMs: 600_000 });
      await page.evaluate((n) => window.bench.captureLoop({ n, chunk: n }).then(() => null), n);
      await sleep(STALL_MS);
    }
    const captured = stalled ? 0 : n;
    // From here the collector answers every body `slowMs` late (until the next load).
    if (slowMs) sink.control.plan([], { delayMs: slowMs });
    if (refusing) sink.control.plan([], { status: 503 });

    let delayMs;
    if (way.id === 'tab') {
      await page.evaluate((n) => window.bench.captureLoop({ n, chunk: n }).then(() => null), captured);
      const t0 = Date.now();
      await page.close({ runBeforeUnload: true });
      while (!page.isClosed() && Date.now() - t0 < LEAVE_TIMEOUT_MS) await sleep(5);
      delayMs = Date.now() - t0;
    } else {
      const next = way.id === 'cross' ? `http://localhost:${new URL(origins.site).port}${BLANK}?run=${runId}` : `${benchUrl}&next=1`;
      await page.evaluate(
        ({ n, next }) => {
          // One task: the captures, then the navigation.
          window.bench.captureLoop({ n, chunk: n }).then(() => {
            location.href = `${next}&left=${Date.now()}`;
          });
        },
        { n: captured, next },
      );
      delayMs = await until(page, loadedSinceLeft, undefined, { timeoutMs: LEAVE_TIMEOUT_MS, message: 'the next page loaded' });
    }
    // Quiet is timed from the leaving's end: posthog-js's pagehide handler can hold the
    // navigation for seconds, and what it sends meanwhile is "at close".
    await quiet(sink, apiKey, Date.now());
    if (stalled || slowMs || refusing) sink.control.plan([], { delayMs: 0 });
    const closing = sink.byKey(apiKey);
    const atClose = closing.uuids.size - warmed;
    const repeatsAtClose = closing.events - closing.uuids.size;
    const byPathAtClose = { ...closing.first, fetch: closing.first.fetch - warmed };

    if (way.id === 'tab') page = await open(await newPage(), benchUrl);
    else if (way.id === 'cross') page = await open(page, `${benchUrl}&next=1`);
    else await until(page, () => window.benchReady === true, undefined, { message: 'the next bench page' });
    const lifecycle = await page.evaluate(() => window.bench.lifecycleTimes());
    const heldMs = await page.evaluate(() => window.bench.leaveHeldMs());
    const t1 = Date.now();
    await setup(page);
    if (contender.kind === 'spool') await Promise.race([page.evaluate(() => window.bench.flush()), sleep(20_000)]);
    await quiet(sink, apiKey, t1, { minMs: 1500 });
    // A copy whose writer never marked it gone (a page whose pagehide was cut short: Firefox
    // ends a closing tab's script partway through it) is taken in only once its writer may no
    // longer be alive: the next page stays open that long if something is still missing.
    if (contender.kind === 'spool' && contender.options.persist !== false && sink.byKey(apiKey).uuids.size < warmed + n) {
      while (Date.now() - t1 < NEXT_LOAD_PATIENCE_MS && sink.byKey(apiKey).uuids.size < warmed + n) await sleep(100);
      await quiet(sink, apiKey, Date.now(), { minMs: 0 });
    }
    const k = sink.byKey(apiKey);
    const longest = lifecycle.reduce((a, d) => (d.ms > (a?.ms ?? -1) ? d : a), null);
    // A dispatch the page went in the middle of: its listener ran at least until the page's end.
    const cut = lifecycle.find((d) => !d.done) ?? null;
    return {
      atClose,
      total: k.uuids.size - warmed,
      repeats: k.events - k.uuids.size,
      repeatsAtClose,
      requests: k.requests,
      bytes: k.bytes,
      undecoded: k.undecoded,
      delayMs,
      heldMs,
      handlerMs: longest?.ms ?? 0,
      handlerType: longest?.type ?? null,
      cutOff: cut?.type ?? null,
      lifecycle,
      byPathAtClose,
      byPath: { ...k.first, fetch: k.first.fetch - warmed },
      errors: errors.filter((e) => !NETWORK_ERROR.test(e)),
    };
  } finally {
    await context.close();
  }
}

/**
 * Figure 7. `cells`: `{ engine, way, n, latencyMs, warm, stalled, slowMs, refusing, contenders,
 * runs }` (`contenders`: ids), run in the order given, grouped by engine (Firefox and WebKit
 * launched for their cells, then closed). In a cell each contender runs `runs` times, the contenders alternating; a row per cell and
 * contender keeps the worst run (fewest distinct events after the next load, then at close),
 * the best, the most repeats, the longest delay and the longest lifecycle dispatch of its runs.
 */
export async function pageClose(chromium, site, sink, { cells, supports, log }) {
  const contenders = closeContenders(supports);
  const rows = [];
  const versions = { chromium: chromium.version() };
  let runId = 0;
  for (const engineId of [...new Set(cells.map((c) => c.engine))]) {
    const engine = ENGINES[engineId];
    let browser = chromium;
    let harness = null;
    if (engine.harness) {
      harness = await import(engine.harness);
      browser = await harness.launchBrowser();
    }
    try {
      for (const cell of cells.filter((c) => c.engine === engineId)) {
        const way = WAYS[cell.way];
        const proxies = [];
        let origins = { site: site.url, sink: sink.url };
        if (cell.slowMs) {
          // The collector on the page's own origin: one host for the page and its requests.
          const router = await startSameOrigin(site.url, sink.url);
          proxies.push(router);
          origins = { site: router.url, sink: router.url };
        } else if (cell.latencyMs && engine.latencyVia === 'proxy') {
          const { startLatencyProxy } = await import('../tests/e2e/firefox.mjs');
          proxies.push(await startLatencyProxy(site.url, { rttMs: cell.latencyMs }), await startLatencyProxy(sink.url, { rttMs: cell.latencyMs }));
          origins = { site: proxies[0].url, sink: proxies[1].url };
        }
        const mine = contenders.filter((c) => cell.contenders.includes(c.id));
        const byId = Object.fromEntries(mine.map((c) => [c.id, []]));
        try {
          for (let r = 0; r < cell.runs; r++) {
            for (const c of mine.map((_, i) => mine[(i + r) % mine.length])) {
              const res = await closeRun(engine, browser, origins, sink, c, { way, n: cell.n, latencyMs: cell.latencyMs, warm: cell.warm, stalled: cell.stalled, slowMs: cell.slowMs, refusing: cell.refusing, runId: `${process.pid}x${++runId}` });
              byId[c.id].push(res);
              const paths = PATHS.filter((p) => res.byPathAtClose[p]).map((p) => `${p} ${res.byPathAtClose[p]}`).join(', ');
              log?.(
                `  ${engine.label}, ${way.label}${cell.stalled ? ' (collector answered first, then stalled 2 s)' : cell.warm ? ' (collector answered first)' : ''}${cell.slowMs ? ` (same-origin collector answering in ${cell.slowMs} ms)` : ''}${cell.refusing ? ' (collector refusing until the next load)' : ''}, N=${cell.n} ${cell.latencyMs} ms, ${c.label}: ` +
                  `${res.atClose} at close (${paths || 'none'}), ${res.total} with the next load, ${res.repeats} repeats (${res.repeatsAtClose} at close), ` +
                  `${way.delay} +${res.delayMs} ms, beforeunload to pagehide ${res.heldMs ?? '—'} ms, longest lifecycle dispatch ${res.handlerMs.toFixed(1)} ms${res.handlerType ? ` (${res.handlerType})` : ''}` +
                  `${res.cutOff ? `, the page went during a ${res.cutOff} listener` : ''}` +
                  `${res.undecoded ? `, ${res.undecoded} undecoded` : ''}${res.errors.length ? `, page errors: ${res.errors.slice(0, 2).join(' | ')}` : ''}`,
              );
            }
          }
        } finally {
          await Promise.all(proxies.map((p) => p.close()));
        }
        for (const c of mine) {
          const rs = [...byId[c.id]].sort((a, b) => a.total - b.total || a.atClose - b.atClose);
          rows.push({
            engine: engineId,
            way: cell.way,
            n: cell.n,
            latencyMs: cell.latencyMs,
            warm: Boolean(cell.warm),
            stalled: Boolean(cell.stalled),
            slowMs: cell.slowMs ?? 0,
            refusing: Boolean(cell.refusing),
            id: c.id,
            label: c.label,
            runs: rs.length,
            worst: rs[0],
            best: rs[rs.length - 1],
            atClose: summary(rs.map((x) => x.atClose)),
            total: summary(rs.map((x) => x.total)),
            repeats: Math.max(...rs.map((x) => x.repeats)),
            repeatsAtClose: Math.max(...rs.map((x) => x.repeatsAtClose)),
            delayMs: Math.max(...rs.map((x) => x.delayMs)),
            heldMs: rs.some((x) => x.heldMs !== null) ? Math.max(...rs.map((x) => x.heldMs ?? 0)) : null,
            handlerMs: Math.max(...rs.map((x) => x.handlerMs)),
            cutOff: rs.find((x) => x.cutOff)?.cutOff ?? null,
            errors: rs.flatMap((x) => x.errors),
          });
        }
      }
      versions[engineId] = browser.version();
    } finally {
      if (harness) await browser.close();
    }
  }
  return { cells, contenders, supports, rows, versions };
}

// --- figure 8: wire, compressed ------------------------------------------------------------

/** The contenders of figure 8, given what the package supports. */
export function wireContenders(supports) {
  const spool = (id, label, options) => ({ id, label, kind: 'spool', options: { maxQueueEvents: 200_000, maxQueueBytes: 1 << 30, batchMode: 'linger', ...options } });
  return [
    spool('spool-gzip', supports.compression ? 'spool, compression "gzip"' : 'spool (no `compression` key in this build: plain)', spoolOptions(supports, { compression: 'gzip' })),
    ...(supports.compression ? [spool('spool-none', 'spool, compression "none"', { compression: 'none' })] : []),
    { id: 'posthog-gzip', label: 'posthog-js, gzip-js', kind: 'posthog', options: { disable_compression: false }, gzipJs: true },
    { id: 'posthog', label: 'posthog-js, no compression', kind: 'posthog' },
  ];
}
