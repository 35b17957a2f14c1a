//! Figures 7 and 8: what gets out when a page holding N events navigates away (at close and from
//! the next load), and bytes on the wire with compression, spool beside posthog-js, in headless
//! Chromium. bench/run.mjs calls these; the page is bench/pages/bench.html on the bench's own
//! collector (tools/collector.mjs, origin A) and every batch goes to `startSink()` (origin B,
//! cross-origin as PostHog is to a site), which decodes what tools/collector.mjs does not:
//! gzip bodies recognised by their magic bytes (spool's `compression: "gzip"`, posthog-js's
//! gzip-js, both `text/plain` with no header) and posthog-js's `data=<base64>` form (what it
//! sends with `sendBeacon` at `pagehide`).
//!
//! The same code measures spool before and after it learns `persist` and `compression`:
//! `pkgSupports(root)` reads them from pkg/spool.d.ts, and spool is given them only when the
//! built package knows them; otherwise the figures show what today's package does.

import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import zlib from 'node:zlib';
import { openContender } from './browser.mjs';
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
 * Starts the sink on 127.0.0.1: answers every POST `{"status":1}` after `delayMs` (the plan's
 * default, as tools/collector.mjs's `control.plan([], { delayMs })`), with CORS for any
 * origin. Its `log(since)` has the shape bench/browser.mjs's Tally reads from
 * tools/collector.mjs (`{ batches: [{ seq, path, bytes, receivedAt, body }] }`, body decoded),
 * and `byKey(key)` counts what one sender delivered: requests, wire bytes, events, distinct
 * uuids, the time of the last arrival.
 */
export async function startSink() {
  const state = { seq: 0, batches: [], keys: new Map(), delayMs: 0 };
  const key = (k) => {
    if (!state.keys.has(k)) state.keys.set(k, { requests: 0, bytes: 0, events: 0, uuids: new Set(), undecoded: 0, last: 0 });
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
      for (const e of eventsOf(body)) {
        k.events++;
        if (e?.uuid) k.uuids.add(e.uuid);
      }
      state.batches.push({ seq: ++state.seq, path: new URL(req.url, 'http://sink').pathname, bytes: buf.length, receivedAt: now, body });
      const reply = () => res.writeHead(200, { ...cors, 'Content-Type': 'application/json' }).end('{"status":1}');
      state.delayMs ? setTimeout(reply, state.delayMs) : reply();
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
        state.delayMs = dflt?.delayMs ?? 0;
      },
      reset() {
        state.batches = [];
        state.keys.clear();
        state.seq = 0;
        state.delayMs = 0;
      },
    },
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

// --- figure 7: page close ------------------------------------------------------------------

/** The contenders of figure 7, given what the package supports. */
export function closeContenders(supports) {
  return [
    { id: 'spool', label: 'spool (defaults)', kind: 'spool', options: spoolOptions(supports, { persist: true, compression: 'gzip' }) },
    { id: 'posthog', label: 'posthog-js (no compression)', kind: 'posthog' },
    { id: 'posthog-gzip', label: 'posthog-js (gzip-js, as PostHog Cloud runs it)', kind: 'posthog', options: { disable_compression: false }, gzipJs: true },
  ];
}

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
 * One navigation: open the bench page in a fresh context (CDP latency on its page when
 * `latencyMs`), set up the contender, capture `n` events in one task and, at the end of that
 * same task, navigate to the next page (the same bench page, same site). Once the sink is
 * quiet, the distinct events it has are "at close". Then the next page sets up the same
 * contender (same key, same endpoint: spool's `new Exporter` sends what it stored) and flushes;
 * once quiet again, the distinct events are "after the next load".
 */
async function closeRun(browser, site, sink, contender, { n, latencyMs, runId }) {
  const apiKey = `${contender.id}-${runId}`;
  const h = await openContender(browser, site, contender, { apiKey, endpoint: `${sink.url}/batch/` });
  try {
    if (latencyMs) {
      await h.cdp.send('Network.enable');
      await h.cdp.send('Network.emulateNetworkConditions', { offline: false, latency: latencyMs, downloadThroughput: -1, uploadThroughput: -1 });
    }
    const next = `${site.url}/bench/pages/bench.html?next=${runId}`;
    const left = h.page.waitForURL(next, { waitUntil: 'load', timeout: 120_000 });
    await h.page.evaluate(({ n, next }) => {
      // One task: the captures, then the navigation (a click on a link after a busy moment).
      window.bench.captureLoop({ n, chunk: n }).then(() => {
        sessionStorage.setItem('bench:navigatedAt', String(Date.now()));
        location.href = next;
      });
    }, { n, next });
    await left;
    // From `location.href = next` to the next page's load event (by the page's own clock).
    const navMs = await h.page.evaluate(() => {
      const [nav] = performance.getEntriesByType('navigation');
      return Math.round(performance.timeOrigin + (nav.loadEventEnd || performance.now()) - Number(sessionStorage.getItem('bench:navigatedAt')));
    });
    // Quiet is timed from the next page's load: posthog-js's pagehide handler can hold the
    // navigation for many seconds, and what it sends meanwhile is "at close".
    await quiet(sink, apiKey, Date.now());
    const atClose = sink.byKey(apiKey).uuids.size;
    const t1 = Date.now();
    await h.page.waitForFunction(() => window.benchReady === true);
    await h.page.evaluate((spec) => window.bench.setup(spec), { kind: contender.kind, apiKey, endpoint: `${sink.url}/batch/`, options: contender.options ?? {} });
    if (contender.kind === 'spool') await Promise.race([h.page.evaluate(() => window.bench.flush()), sleep(20_000)]);
    await quiet(sink, apiKey, t1, { minMs: 1500 });
    const k = sink.byKey(apiKey);
    return {
      atClose,
      total: k.uuids.size,
      duplicates: k.events - k.uuids.size,
      requests: k.requests,
      bytes: k.bytes,
      undecoded: k.undecoded,
      navMs,
      errors: h.errors.filter((e) => !/NetworkError|Failed to fetch|net::ERR/.test(e)),
    };
  } finally {
    await h.close();
  }
}

/**
 * Figure 7: for each N and latency, each contender `runs` times (the contenders alternating),
 * the worst run (fewest distinct events after the next load) and the best.
 */
export async function pageClose(browser, site, sink, { ns, latencies, runs, supports, log }) {
  const contenders = closeContenders(supports);
  const rows = [];
  let runId = 0;
  for (const n of ns) {
    for (const latencyMs of latencies) {
      const byId = Object.fromEntries(contenders.map((c) => [c.id, []]));
      for (let r = 0; r < runs; r++) {
        for (const c of contenders.map((_, i) => contenders[(i + r) % contenders.length])) {
          const res = await closeRun(browser, site, sink, c, { n, latencyMs, runId: `${process.pid}x${++runId}` });
          byId[c.id].push(res);
          log?.(`  N=${n} ${latencyMs} ms ${c.label}: ${res.atClose} at close, ${res.total} after the next load, ${res.duplicates} duplicates, ${res.requests} requests, next page +${res.navMs} ms${res.undecoded ? `, ${res.undecoded} undecoded` : ''}${res.errors.length ? `, page errors: ${res.errors.slice(0, 2).join(' | ')}` : ''}`);
        }
      }
      for (const c of contenders) {
        const rs = [...byId[c.id]].sort((a, b) => a.total - b.total || a.atClose - b.atClose);
        rows.push({
          n,
          latencyMs,
          id: c.id,
          label: c.label,
          worst: rs[0],
          best: rs[rs.length - 1],
          atClose: summary(rs.map((x) => x.atClose)),
          total: summary(rs.map((x) => x.total)),
          duplicates: summary(rs.map((x) => x.duplicates)),
          navMs: summary(rs.map((x) => x.navMs)),
        });
      }
    }
  }
  return { ns, latencies, runs, contenders, supports, rows };
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
