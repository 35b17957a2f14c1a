//! What a browser lets out when a page with many events held navigates away.
//!
//!   node bench/pagehide.mjs [section ...] [--browser chromium|firefox|both] [--runs 3]
//!                           [--bfcache] [--close] [--cross-site] [--latency-via cdp|proxy] [--only REGEX] [--out FILE] [--wasm DIR]
//!
//! Sections (default: all): quota nav hooks gzip scale posthog design storage workers compress.
//! Each navigation cell is run `--runs` times and the table shows the worst run (fewest distinct
//! events at the collector), then the best, as "worst (best)".
//!
//! Two servers on 127.0.0.1, on different ports (so the collector is cross-origin, as PostHog
//! is to a site): a page server (the test page, /next.html, node_modules) and a collector that
//! decodes every body (plain JSON, gzip by its magic bytes, posthog-js's base64 form) and
//! counts distinct event uuids per run. A page holds N events of ~300 bytes of PostHog batch
//! JSON (the shape src/engine/format.rs writes), sends them as configured when a lifecycle
//! event fires, and the harness then navigates the tab to /next.html (or closes it with
//! `--close`). The collector's count after 1.5 s of quiet (at most 15 s) is "delivered".
//!
//! Latency: Chromium gets CDP `Network.emulateNetworkConditions` (latency on every request,
//! the navigation included) unless `--latency-via proxy`. Firefox over WebDriver BiDi has no
//! such command, so it always goes through the proxy: a TCP proxy in this script that delays
//! every byte 40 ms each way (80 ms RTT) in front of both the page server and the collector.
//!
//! Playwright starts Chromium with --disable-back-forward-cache; `--bfcache` removes that flag
//! so the page may enter the back/forward cache, as it would for a user.

import http from 'node:http';
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { decodeBody as decodeBatchBody } from './close.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const flag = (name) => argv.includes(name);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const RUNS = Number(opt('--runs', 3));
const BROWSERS = (() => {
  const b = opt('--browser', 'both');
  return b === 'both' ? ['chromium', 'firefox'] : [b];
})();
const SECTIONS = argv.filter((a, i) => !a.startsWith('--') && !(i > 0 && argv[i - 1].startsWith('--') && ['--browser', '--runs', '--wasm', '--out', '--only', '--latency-via'].includes(argv[i - 1])));
const want = (s) => SECTIONS.length === 0 || SECTIONS.includes(s);

// ---------------------------------------------------------------------------------------------
// Events: ~300 bytes of PostHog batch JSON each. The function is also sent to the page as text.

function makeFragments(n, seed) {
  // xorshift32, so every run holds different uuids but the same shapes.
  let s = seed >>> 0 || 1;
  const rnd = () => ((s ^= s << 13), (s ^= s >>> 17), (s ^= s << 5), (s >>> 0) / 4294967296);
  const hex = (k) => {
    let out = '';
    for (let j = 0; j < k; j++) out += '0123456789abcdef'[(rnd() * 16) | 0];
    return out;
  };
  const pages = ['/checkout', '/cart', '/product/1842', '/search', '/account/settings', '/'];
  const names = ['page_view', 'add_to_cart', 'checkout_step', 'search', 'button_click'];
  const t0 = 1_764_500_000_000;
  const out = [];
  for (let i = 0; i < n; i++) {
    const ms = t0 + i * 37;
    const uuid = `019ad${hex(3)}-${hex(4)}-7${hex(3)}-${'89ab'[(rnd() * 4) | 0]}${hex(3)}-${hex(12)}`;
    const props = {
      i,
      path: pages[(rnd() * pages.length) | 0],
      plan: rnd() < 0.7 ? 'pro' : 'free',
      amount: Math.round(rnd() * 100000) / 100,
      $current_url: 'https://shop.example.com' + pages[(rnd() * pages.length) | 0] + '?ref=newsletter',
      $screen_width: 1920,
      $session_id: '019ad2f1-6c0e-7a51-9d3c-5b2f0e4c1a77',
    };
    out.push(
      `{"event":"${names[(rnd() * names.length) | 0]}","distinct_id":"0190a3c1-7a2b-7c3d-8e4f-5a6b7c8d9e0f","properties":${JSON.stringify(props)},"timestamp":"${new Date(ms).toISOString()}","uuid":"${uuid}"}`,
    );
  }
  return out;
}

/** Greedy chunks of fragments whose batch body stays within `max` bytes. */
function chunkFragments(frags, apiKey, max) {
  const head = `{"api_key":"${apiKey}","batch":[`.length;
  const tail = '],"sent_at":"2026-11-30T14:00:00.000Z"}'.length;
  const chunks = [];
  let cur = [];
  let len = head + tail;
  for (const f of frags) {
    const add = f.length + (cur.length ? 1 : 0);
    if (cur.length && len + add > max) {
      chunks.push(cur);
      cur = [];
      len = head + tail;
    }
    len += f.length + (cur.length ? 1 : 0);
    cur.push(f);
  }
  if (cur.length) chunks.push(cur);
  return chunks;
}

function body(apiKey, frags) {
  return `{"api_key":"${apiKey}","batch":[${frags.join(',')}],"sent_at":"${new Date().toISOString()}"}`;
}

// ---------------------------------------------------------------------------------------------
// The page: sends held events as `cfg` says, and logs what it did to localStorage (synchronous,
// so it survives the navigation; the harness reads it from /next.html, same origin).

function pageMain(cfg, makeFragments, chunkFragments, body, gzipSync) {
  const log = { hooks: [], offered: 0, accepted: 0, rejected: 0, plain: 0, persisted: 0, settled: 0, failed: 0, buildMs: 0, events: cfg.n, bodies: 0, wireBytes: 0 };
  const save = () => {
    try {
      localStorage.setItem('log:' + cfg.run, JSON.stringify(log));
    } catch {}
  };
  const url = cfg.collector + '/batch/?run=' + cfg.run;
  const frags = makeFragments(cfg.n, cfg.seed);
  // With gzip, `size` is the wire size: estimate the ratio once at load on a sample.
  let rawMax = cfg.size;
  if (cfg.gzip) {
    const sample = body(cfg.run, frags.slice(0, 200));
    const ratio = gzipSync(new TextEncoder().encode(sample)).length / sample.length;
    rawMax = Math.floor((cfg.size / ratio) * 0.92);
  }
  let queue = null; // bodies not yet handed to the browser
  let started = false;
  let inflight = 0;
  let pendingBytes = 0;
  const inflightBodies = new Set(); // keepalive bodies not yet answered
  let persistedBodies = null; // after pagehide: what localStorage holds
  const writeHeld = () => {
    const held = [...persistedBodies].flatMap((x) => x.frags);
    try {
      if (held.length) localStorage.setItem('held:' + cfg.run, JSON.stringify({ collector: cfg.collector, frags: held }));
      else localStorage.removeItem('held:' + cfg.run);
      log.persisted = held.length;
    } catch (e) {
      log.persistError = String(e);
    }
  };

  function build() {
    const t = performance.now();
    queue = chunkFragments(frags, cfg.run, rawMax).map((c) => {
      const s = body(cfg.run, c);
      return cfg.gzip ? { b: gzipSync(new TextEncoder().encode(s), { mtime: 0 }), frags: c } : { b: s, frags: c };
    });
    log.buildMs = performance.now() - t;
    log.bodies = queue.length;
  }
  const size = (x) => (typeof x.b === 'string' ? x.b.length : x.b.byteLength);

  function plainFetch(x) {
    log.plain++;
    fetch(url + '&via=plain', { method: 'POST', body: x.b, headers: { 'Content-Type': 'text/plain' } }).catch(() => {});
  }
  // Sends one body; true when the browser took it (sendBeacon's answer, or within the page's own
  // keepalive byte budget for fetch).
  function send(x, transport) {
    log.offered++;
    const n = size(x);
    let ok = false;
    if (transport === 'beacon') {
      try {
        ok = navigator.sendBeacon(url + '&via=beacon', new Blob([x.b], { type: 'text/plain' }));
      } catch {
        ok = false;
      }
    } else if (pendingBytes + n <= cfg.budget) {
      ok = true;
      pendingBytes += n;
      inflight++;
      inflightBodies.add(x);
      // A rejected request's body goes back to the front of the queue and the chain stops
      // (pagehide may still send it); a completed one lets the chain send the next.
      fetch(url + '&via=keepalive', { method: 'POST', body: x.b, keepalive: true, headers: { 'Content-Type': 'text/plain' } })
        .then(
          () => {
            log.settled++;
            // Answered after pagehide (the old page may still run, cross-site): no longer held.
            if (persistedBodies && persistedBodies.delete(x)) writeHeld();
            return true;
          },
          () => {
            log.failed++;
            log.accepted--;
            log.wireBytes -= n;
            // Before pagehide it goes back to the queue; after, it is already persisted.
            if (queue && !persistedBodies) queue.unshift(x);
            return false;
          },
        )
        .then((ok) => {
          inflightBodies.delete(x);
          pendingBytes -= n;
          inflight--;
          save();
          if (ok && started && cfg.strategy === 'chain') pump(transport);
        });
    }
    if (ok) {
      log.accepted++;
      log.wireBytes += n;
    } else log.rejected++;
    return ok;
  }
  function pump(transport) {
    while (queue.length && inflight < cfg.conc) {
      const x = queue[0];
      if (!send(x, transport)) break;
      queue.shift();
    }
  }
  function burst(transport) {
    const rest = [];
    for (const x of queue) {
      if (send(x, transport)) continue;
      if (cfg.fallback === 'plain') plainFetch(x);
      else rest.push(x);
    }
    queue = rest;
    // Persist what the browser did not take, and keepalive bodies still unanswered (at least
    // once: one that completes later is a duplicate unless its answer removes it in time).
    if (cfg.persist) {
      persistedBodies = new Set([...rest, ...inflightBodies]);
      writeHeld();
      queue = [];
    }
  }

  function onHook(name, ev) {
    log.hooks.push([name, Math.round(performance.now()), document.visibilityState, ev && 'persisted' in ev ? ev.persisted : null]);
    if (name === cfg.start && !started) {
      started = true;
      build();
      if (cfg.strategy === 'chain') pump(cfg.transport);
      else burst(cfg.transport);
    } else if (name === cfg.final && started && queue.length) {
      burst(cfg.finalTransport || cfg.transport);
    }
    if (name === 'pagehide' && cfg.spinMs) {
      const t = performance.now();
      while (performance.now() - t < cfg.spinMs);
    }
    log.handlerMs = (log.handlerMs || 0) + 0;
    save();
  }
  addEventListener('beforeunload', (e) => onHook('beforeunload', e));
  addEventListener('pagehide', (e) => onHook('pagehide', e));
  document.addEventListener('visibilitychange', (e) => {
    if (document.visibilityState === 'hidden') onHook('visibilitychange', e);
  });
  addEventListener('freeze', (e) => onHook('freeze', e));
  save();
  window.__ready = true;
}

// The page's own HTML: posthog-js pages import the package; our pages inline pageMain.
function pageHtml(cfg) {
  if (cfg.kind === 'posthog') {
    return `<!doctype html><meta charset=utf-8><title>posthog</title><script type=module>
const cfg = ${JSON.stringify(cfg)};
let phStart = 0;
addEventListener('pagehide', () => { phStart = performance.now(); });
const { default: posthog } = await import('/node_modules/posthog-js/dist/module.js');
const makeFragments = ${makeFragments.toString()};
await new Promise((resolve) => posthog.init(cfg.run, {
  api_host: cfg.collector, opt_out_useragent_filter: true, advanced_disable_flags: true, advanced_disable_decide: true,
  persistence: 'memory', autocapture: false, capture_pageview: false, capture_pageleave: false, capture_performance: false,
  capture_heatmaps: false, capture_dead_clicks: false, capture_exceptions: false, disable_session_recording: true,
  disable_surveys: true, disable_product_tours: true, disable_web_experiments: true, disable_external_dependency_loading: true,
  rate_limiting: { events_per_second: 1e9, events_burst_limit: 1e9 }, bootstrap: { distinctID: '0190a3c1-7a2b-7c3d-8e4f-5a6b7c8d9e0f' },
  ...(cfg.gzip ? {} : { disable_compression: true }),
  loaded: (ph) => { if (cfg.gzip) ph.compression = 'gzip-js'; resolve(); },
}));
const log = { hooks: [] };
const save = () => localStorage.setItem('log:' + cfg.run, JSON.stringify(log));
for (const h of ['beforeunload', 'pagehide']) addEventListener(h, (e) => { log.hooks.push([h, Math.round(performance.now()), e.persisted ?? null]); if (h === 'pagehide') log.handlerMs = performance.now() - phStart; save(); });
// Same properties as our pages' events; posthog-js adds its own ($lib, $current_url, ...).
const frags = makeFragments(cfg.n, cfg.seed).map((s) => JSON.parse(s));
for (const e of frags) posthog.capture(e.event, e.properties);
save();
window.__ready = true;
</script>`;
  }
  return `<!doctype html><meta charset=utf-8><title>page</title><script type=module>
import { gzipSync } from '/node_modules/fflate/esm/browser.js';
(${pageMain.toString()})(${JSON.stringify(cfg)}, ${makeFragments.toString()}, ${chunkFragments.toString()}, ${body.toString()}, gzipSync);
</script>`;
}

// The next page: reads the log, and sends events a page persisted (the "next load" path).
const NEXT_HTML = `<!doctype html><meta charset=utf-8><title>next</title><script>
for (const k of Object.keys(localStorage)) {
  if (!k.startsWith('held:')) continue;
  const { collector, frags } = JSON.parse(localStorage.getItem(k));
  localStorage.removeItem(k);
  const run = k.slice(5);
  for (let i = 0; i < frags.length; i += 150) {
    const b = '{"api_key":"' + run + '","batch":[' + frags.slice(i, i + 150).join(',') + '],"sent_at":"' + new Date().toISOString() + '"}';
    fetch(collector + '/batch/?via=nextload&run=' + run, { method: 'POST', body: b, headers: { 'Content-Type': 'text/plain' } });
  }
}
</script><p>next</p>`;

// ---------------------------------------------------------------------------------------------
// Servers.

/** A body decoded as bench/close.mjs's sink does, posthog-js's bare array as a `{batch}`. */
function decodeBody(buf, url) {
  const j = decodeBatchBody(buf, url);
  return Array.isArray(j) ? { api_key: null, batch: j } : j;
}

function startServers() {
  const runs = new Map();
  const stat = (run) => {
    if (!runs.has(run)) runs.set(run, { uuids: new Map(), reqs: 0, bytes: 0, first: 0, last: 0, via: {}, errors: 0, preflights: 0 });
    return runs.get(run);
  };
  let responseDelay = 0;
  const collector = http.createServer((req, res) => {
    const cors = { 'Access-Control-Allow-Origin': '*', 'Access-Control-Allow-Headers': '*', 'Access-Control-Allow-Methods': 'POST, GET, OPTIONS' };
    if (req.method === 'OPTIONS') {
      const u = new URL(req.url, 'http://x');
      stat(u.searchParams.get('run') || '?').preflights++;
      res.writeHead(204, cors).end();
      return;
    }
    const parts = [];
    req.on('data', (c) => parts.push(c));
    req.on('error', () => {});
    req.on('end', () => {
      const buf = Buffer.concat(parts);
      const now = Date.now();
      let j = null;
      try {
        j = decodeBody(buf, req.url);
      } catch {}
      const u = new URL(req.url, 'http://x');
      const run = (j && (j.api_key || (j.batch[0] && (j.batch[0].properties?.token || j.batch[0].token)))) || u.searchParams.get('run') || '?';
      const s = stat(run);
      s.reqs++;
      s.bytes += buf.length;
      if (!s.first) s.first = now;
      s.last = now;
      const via = u.searchParams.get('via') || (u.pathname.startsWith('/e') ? 'posthog' : '?');
      s.via[via] = (s.via[via] || 0) + 1;
      if (!j) s.errors++;
      else for (const e of j.batch) s.uuids.set(e.uuid, (s.uuids.get(e.uuid) || 0) + 1);
      const reply = () => res.writeHead(200, { ...cors, 'Content-Type': 'application/json' }).end('{"status":1}');
      responseDelay ? setTimeout(reply, responseDelay) : reply();
    });
  });
  const pages = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    if (u.pathname === '/p.html') {
      const cfg = JSON.parse(Buffer.from(u.searchParams.get('cfg'), 'base64url').toString());
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' }).end(pageHtml(cfg));
    } else if (u.pathname === '/next.html') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(NEXT_HTML);
    } else if (u.pathname.startsWith('/node_modules/')) {
      const f = path.join(root, path.normalize(u.pathname));
      if (!f.startsWith(path.join(root, 'node_modules')) || !fs.existsSync(f)) return res.writeHead(404).end();
      res.writeHead(200, { 'Content-Type': 'text/javascript' }).end(fs.readFileSync(f));
    } else res.writeHead(404).end();
  });
  const listen = (s) => new Promise((r) => s.listen(0, '127.0.0.1', () => r(s.address().port)));
  // A TCP proxy that delays every byte (and every close) by `oneWay` ms in each direction: a
  // link with an RTT of 2 × oneWay that any browser sees the same way. Bytes a browser has
  // written still arrive after it gives up on a request, as on a real network.
  const delayProxy = (port, oneWay) => {
    const srv = net.createServer((client) => {
      const up = net.connect(port, '127.0.0.1');
      const later = (f) => setTimeout(f, oneWay);
      client.on('data', (d) => later(() => up.writable && up.write(d)));
      up.on('data', (d) => later(() => client.writable && client.write(d)));
      client.on('end', () => later(() => up.end()));
      up.on('end', () => later(() => client.end()));
      client.on('error', () => later(() => up.destroy()));
      up.on('error', () => later(() => client.destroy()));
      client.on('close', () => later(() => up.destroy()));
    });
    return srv;
  };
  // localhost must reach the page server too (--cross-site); it resolves to 127.0.0.1 here.
  return Promise.all([listen(collector), listen(pages)]).then(async ([cp, pp]) => ({
    collectorOrigin: `http://127.0.0.1:${cp}`,
    pageOrigin: `http://127.0.0.1:${pp}`,
    proxied: {
      collectorOrigin: `http://127.0.0.1:${await listen(delayProxy(cp, 40))}`,
      pageOrigin: `http://127.0.0.1:${await listen(delayProxy(pp, 40))}`,
    },
    runs,
    setResponseDelay: (ms) => (responseDelay = ms),
    close: () => (collector.closeAllConnections?.(), pages.closeAllConnections?.(), collector.close(), pages.close()),
  }));
}

// ---------------------------------------------------------------------------------------------
// Browsers: one interface over playwright-core (Chromium) and puppeteer-core (Firefox, BiDi).

async function openBrowser(kind) {
  if (kind === 'chromium') {
    const { chromium } = await import('playwright-core');
    const b = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      headless: true,
      ...(flag('--bfcache') ? { ignoreDefaultArgs: ['--disable-back-forward-cache'] } : {}),
    });
    return {
      kind,
      version: b.version(),
      async page(latency) {
        const ctx = await b.newContext();
        const p = await ctx.newPage();
        if (latency) {
          const cdp = await ctx.newCDPSession(p);
          await cdp.send('Network.enable');
          await cdp.send('Network.emulateNetworkConditions', { offline: false, latency, downloadThroughput: -1, uploadThroughput: -1 });
        }
        return {
          goto: (u) => p.goto(u, { waitUntil: 'load', timeout: 60_000 }),
          waitReady: () => p.waitForFunction(() => window.__ready === true, null, { timeout: 120_000 }),
          evaluate: (f, a) => p.evaluate(f, a),
          close: async (beforeUnload) => p.close({ runBeforeUnload: beforeUnload }),
          dispose: () => ctx.close().catch(() => {}),
          newPage: async () => {
            const q = await ctx.newPage();
            return { goto: (u) => q.goto(u), evaluate: (f, a) => q.evaluate(f, a) };
          },
        };
      },
      close: () => b.close(),
    };
  }
  const puppeteer = (await import('puppeteer-core')).default;
  const b = await puppeteer.launch({ browser: 'firefox', executablePath: '/usr/bin/firefox-esr', headless: true });
  const version = await b.version();
  return {
    kind,
    version,
    async page() {
      const ctx = await b.createBrowserContext();
      const p = await ctx.newPage();
      return {
        goto: (u) => p.goto(u, { waitUntil: 'load', timeout: 60_000 }),
        waitReady: () => p.waitForFunction(() => window.__ready === true, { timeout: 120_000, polling: 100 }),
        evaluate: (f, a) => p.evaluate(f, a),
        close: async (beforeUnload) => p.close({ runBeforeUnload: beforeUnload }),
        dispose: () => ctx.close().catch(() => {}),
        newPage: async () => {
          const q = await ctx.newPage();
          return { goto: (u) => q.goto(u), evaluate: (f, a) => q.evaluate(f, a) };
        },
      };
    },
    close: () => b.close(),
  };
}

// ---------------------------------------------------------------------------------------------
// One navigation run, and cells of runs.

let runSeq = 0;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function navRun(env0, browser, cfg0) {
  // Latency: Chromium takes CDP emulation unless --latency-via proxy; Firefox always the proxy
  // (80 ms RTT through delayProxy for both the page and the collector).
  const viaProxy = cfg0.latency && (browser.kind === 'firefox' || opt('--latency-via', 'cdp') === 'proxy');
  const env = viaProxy ? { ...env0, ...env0.proxied } : env0;
  const run = `run${process.pid}x${++runSeq}`;
  const cfg = {
    kind: 'page', n: 3000, size: 14 * 1024, transport: 'beacon', start: 'pagehide', final: null, strategy: 'burst',
    conc: 64, budget: 64 * 1024, fallback: 'none', gzip: false, persist: false, latency: 0,
    ...cfg0, run, seed: runSeq * 7919, collector: env.collectorOrigin,
  };
  const chromeLatency = viaProxy ? 0 : cfg.latency;
  const p = await browser.page(chromeLatency);
  try {
    await p.goto(`${env.pageOrigin}/p.html?cfg=${Buffer.from(JSON.stringify(cfg)).toString('base64url')}`);
    await p.waitReady();
    const tNav = Date.now();
    let logText = null;
    let navMs = 0;
    if (flag('--close')) {
      await p.close(true);
      const q = await p.newPage(); // same context: same localStorage
      await q.goto(`${env.pageOrigin}/next.html`);
      logText = await q.evaluate((r) => localStorage.getItem('log:' + r), run);
    } else {
      // --cross-site: 127.0.0.1 → localhost is another site, so Chromium commits the next page in
      // another renderer process and runs the old page's handlers there in the background.
      await p.goto(`${flag('--cross-site') ? env.pageOrigin.replace('127.0.0.1', 'localhost') : env.pageOrigin}/next.html`);
      navMs = Date.now() - tNav;
      if (!flag('--cross-site')) logText = await p.evaluate((r) => localStorage.getItem('log:' + r), run);
    }
    // Quiet for 1.5 s (and at least 2 s after navigation), at most 15 s.
    for (;;) {
      await sleep(250);
      const s = env.runs.get(run);
      const now = Date.now();
      if (now - tNav > 15_000) break;
      if (now - tNav > 2_000 && (!s || now - s.last > 1_500)) break;
    }
    if (flag('--cross-site')) {
      await p.goto(`${env.pageOrigin}/next.html`); // the next load of the same site
      logText = await p.evaluate((r) => localStorage.getItem('log:' + r), run);
      await sleep(1500);
    }
    const s = env.runs.get(run) || { uuids: new Map(), reqs: 0, bytes: 0, first: 0, last: 0, via: {}, errors: 0, preflights: 0 };
    let dupes = 0;
    for (const c of s.uuids.values()) dupes += c - 1;
    return {
      delivered: s.uuids.size, dupes, navMs, reqs: s.reqs, bytes: s.bytes, via: s.via, errors: s.errors, preflights: s.preflights,
      spreadMs: s.first ? s.last - s.first : 0, lastAfterNavMs: s.last ? s.last - tNav : 0,
      log: logText ? JSON.parse(logText) : null,
    };
  } finally {
    await p.dispose();
  }
}

async function cell(env, browser, cfg) {
  const rs = [];
  for (let i = 0; i < RUNS; i++) rs.push(await navRun(env, browser, cfg));
  rs.sort((a, b) => a.delivered - b.delivered);
  return { worst: rs[0], best: rs[rs.length - 1], runs: rs };
}

const fmt = (x) => x.toLocaleString('en-US');
function table(title, cmd, header, rows, notes = []) {
  const lines = [`### ${title}`, '', `\`${cmd}\``, '', `| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`];
  for (const r of rows) lines.push(`| ${r.join(' | ')} |`);
  for (const n of notes) lines.push('', n);
  lines.push('');
  const text = lines.join('\n');
  console.log(text);
  return text;
}

function describe(c) {
  const w = c.worst;
  const l = w.log || {};
  const via = Object.entries(w.via).map(([k, v]) => `${k}:${v}`).join(' ');
  return {
    delivered: `${fmt(w.delivered)} (${fmt(c.best.delivered)})`,
    detail: `${w.reqs} req ${via}; ${fmt(Math.round(w.bytes / 1024))} KB; last +${w.lastAfterNavMs} ms${w.dupes ? `; ${w.dupes} dupes` : ''}; next page loaded +${w.navMs} ms`,
    page: (l.offered != null ? `${l.accepted}/${l.offered} taken, ${l.bodies} bodies, build ${Math.round(l.buildMs || 0)} ms${l.failed ? `, ${l.failed} keepalive rejected` : ''}${l.persisted ? `, ${l.persisted} persisted` : ''}` : '') + (l.handlerMs ? `pagehide handler ${Math.round(l.handlerMs)} ms` : ''),
    hooks: (l.hooks || []).map((h) => h[0] + (h[3] === true || h[2] === true ? '(persisted)' : '')).join('→'),
  };
}

// ---------------------------------------------------------------------------------------------
// Sections that need no navigation.

/** In-page: how much a synchronous loop gets accepted, and whether the quota frees on completion. */
async function quota(env, browser) {
  const p = await browser.page(0);
  try {
    await p.goto(`${env.pageOrigin}/next.html`);
    const res = await p.evaluate(async (collector) => {
      const out = {};
      const wait = (ms) => new Promise((r) => setTimeout(r, ms));
      const url = collector + '/batch/?run=quota';
      for (const kb of [8, 14, 32, 60, 63, 64, 65]) {
        const b = 'x'.repeat(kb * 1024);
        let n = 0;
        while (n < 200 && navigator.sendBeacon(url, b)) n++;
        out[`beacon ${kb} KB`] = n;
        await wait(1500); // let them complete
      }
      // keepalive fetch: count synchronous-loop requests that do not reject.
      for (const kb of [8, 14, 32, 60, 64, 65]) {
        const b = 'x'.repeat(kb * 1024);
        const ps = [];
        for (let i = 0; i < 20; i++) ps.push(fetch(url, { method: 'POST', body: b, keepalive: true }).then(() => 1, (e) => 0));
        out[`keepalive ${kb} KB`] = (await Promise.all(ps)).reduce((a, x) => a + x, 0);
        await wait(500);
      }
      // Does the quota free? 4 × 15 KB beacons, wait for completion, 4 more.
      {
        const b = 'x'.repeat(15 * 1024);
        let first = 0;
        let second = 0;
        while (first < 50 && navigator.sendBeacon(url, b)) first++;
        await wait(1000);
        while (second < 50 && navigator.sendBeacon(url, b)) second++;
        out['beacon 15 KB: loop, then 1 s later another loop'] = `${first} then ${second}`;
        let third = 0;
        while (third < 50 && navigator.sendBeacon(url, b)) third++;
        out['...and a third loop at once'] = `${third}`;
      }
      await wait(1500);
      // Chained keepalive fetch: 14 KB, at most 4 in flight, the next when one completes.
      {
        const b = 'x'.repeat(14 * 1024);
        let ok = 0;
        let bad = 0;
        const t = performance.now();
        let next = 0;
        const total = 40;
        await new Promise((resolve) => {
          const one = () => {
            if (next >= total) return;
            next++;
            fetch(url, { method: 'POST', body: b, keepalive: true })
              .then(() => ok++, () => bad++)
              .finally(() => (ok + bad === total ? resolve() : one()));
          };
          for (let i = 0; i < 4; i++) one();
        });
        out['keepalive 14 KB chained (4 in flight), 40 bodies'] = `${ok} ok, ${bad} rejected, ${Math.round(performance.now() - t)} ms`;
      }
      return out;
    }, env.collectorOrigin);
    return res;
  } finally {
    await p.dispose();
  }
}

async function storage(env, browser) {
  const p = await browser.page(0);
  try {
    // 1. Write one value at pagehide, read it on the next page: 256 KiB, 512 KiB, 1 MiB.
    const after = {};
    for (const kib of [256, 512, 1024]) {
      await p.goto(`${env.pageOrigin}/next.html?kib=${kib}`);
      await p.evaluate((kib) => {
        localStorage.clear();
        const big = 'y'.repeat(kib * 1024);
        addEventListener('pagehide', () => {
          const t0 = performance.now();
          try {
            localStorage.setItem('held:pagehide', big);
          } catch (e) {
            localStorage.setItem('held:pagehideError', String(e));
          }
          localStorage.setItem('held:pagehideMs', String(performance.now() - t0));
        });
      }, kib);
      await p.goto(`${env.pageOrigin}/next.html?again`);
      const r = await p.evaluate(() => ({
        survived: (localStorage.getItem('held:pagehide') || '').length,
        ms: Number(localStorage.getItem('held:pagehideMs')),
        error: localStorage.getItem('held:pagehideError'),
      }));
      after[`pagehide write of ${kib} KiB: chars on the next page / ms / error`] = `${r.survived} / ${r.ms.toFixed(1)} / ${r.error}`;
    }
    // 2. In a live page: write, read, parse, and how much fits.
    const r = await p.evaluate(() => {
      const s = 'x'.repeat(512 * 1024);
      const big = JSON.stringify(Array.from({ length: 3500 }, (_, i) => ({ i, p: 'y'.repeat(280) }))); // ~1 MiB
      const out = { bytes: big.length };
      localStorage.clear();
      let t = performance.now();
      localStorage.setItem('held:probe', big);
      out.writeMs = performance.now() - t;
      t = performance.now();
      const back = localStorage.getItem('held:probe');
      out.readMs = performance.now() - t;
      t = performance.now();
      JSON.parse(back);
      out.parseMs = performance.now() - t;
      localStorage.clear();
      let n = 0;
      try {
        for (; n < 64; n++) localStorage.setItem('fill' + n, s);
      } catch (e) {
        out.quotaError = e.name;
      }
      out.fitsChars = n * s.length;
      localStorage.clear();
      return out;
    });
    return { ...r, ...after };
  } finally {
    await p.dispose();
  }
}

async function workers(env, browser) {
  const p = await browser.page(0);
  try {
    await p.goto(`${env.pageOrigin}/next.html`);
    return await p.evaluate(async () => {
      const probe = `(async () => {
        const r = { CompressionStream: typeof CompressionStream };
        try {
          const s = new Blob(['{"a":1}'.repeat(2000)]).stream().pipeThrough(new CompressionStream('gzip'));
          const b = new Uint8Array(await new Response(s).arrayBuffer());
          r.gzipBytes = b.length; r.magic = b[0] === 0x1f && b[1] === 0x8b;
        } catch (e) { r.error = String(e); }
        return r;
      })()`;
      const inWindow = await eval(probe);
      const src = `onmessage = async () => postMessage(await ${probe});`;
      const w = new Worker(URL.createObjectURL(new Blob([src], { type: 'text/javascript' })));
      const inWorker = await new Promise((res) => {
        w.onmessage = (e) => res(e.data);
        w.onerror = (e) => res({ error: String(e.message) });
        w.postMessage(0);
      });
      w.terminate();
      return { window: inWindow, worker: inWorker, keepaliveInWorker: 'fetch keepalive: see notes' };
    });
  } finally {
    await p.dispose();
  }
}

async function workerd() {
  try {
    const { Miniflare } = await import('miniflare');
    const mf = new Miniflare({
      modules: true,
      compatibilityDate: '2025-01-01',
      script: `export default { async fetch() {
        const s = new Blob(['{"a":1}'.repeat(2000)]).stream().pipeThrough(new CompressionStream('gzip'));
        const b = new Uint8Array(await new Response(s).arrayBuffer());
        return Response.json({ CompressionStream: typeof CompressionStream, gzipBytes: b.length, magic: b[0] === 0x1f && b[1] === 0x8b });
      } }`,
    });
    const r = await (await mf.dispatchFetch('http://x/')).json();
    await mf.dispose();
    return r;
  } catch (e) {
    return { error: String(e) };
  }
}

/** gzip ratio of spool-shaped batches, and wasm compressors (built elsewhere) in node. */
async function compress() {
  const frags = makeFragments(10_000, 12345);
  const raw = frags.reduce((a, f) => a + f.length, 0);
  const rows = [];
  for (const [label, max] of [['100 events', null], ['~14 KB', 14 * 1024], ['~60 KB', 60 * 1024]]) {
    const chunks = max ? chunkFragments(frags, 'phc_abcdefghijklmnopqrstuvwxyz0123456789ABCDE', max) : Array.from({ length: 100 }, (_, i) => frags.slice(i * 100, i * 100 + 100));
    let plain = 0;
    let gz6 = 0;
    let gz1 = 0;
    for (const c of chunks) {
      const b = Buffer.from(body('phc_abcdefghijklmnopqrstuvwxyz0123456789ABCDE', c));
      plain += b.length;
      gz6 += zlib.gzipSync(b, { level: 6 }).length;
      gz1 += zlib.gzipSync(b, { level: 1 }).length;
    }
    rows.push([label, chunks.length, fmt(plain), fmt(gz6), (gz6 / plain).toFixed(3), fmt(gz1), (gz1 / plain).toFixed(3)]);
  }
  const out = { eventsJson: raw, rows, wasm: [] };
  const dir = opt('--wasm', null);
  if (dir && fs.existsSync(dir)) {
    const sample = Buffer.from(body('phc_abcdefghijklmnopqrstuvwxyz0123456789ABCDE', chunkFragments(frags, 'phc_abcdefghijklmnopqrstuvwxyz0123456789ABCDE', 60 * 1024)[0]));
    const { gzipSync } = await import(path.join(root, 'node_modules/fflate/esm/index.mjs'));
    const timeIt = (f) => {
      for (let i = 0; i < 20; i++) f();
      const ts = [];
      for (let i = 0; i < 60; i++) {
        const t = process.hrtime.bigint();
        f();
        ts.push(Number(process.hrtime.bigint() - t) / 1000);
      }
      ts.sort((a, b) => a - b);
      return ts[Math.floor(ts.length / 2)];
    };
    const base = fs.existsSync(path.join(dir, 'base.wasm')) ? zlib.gzipSync(fs.readFileSync(path.join(dir, 'base.wasm')), { level: 9 }).length : 0;
    for (const f of fs.readdirSync(dir).filter((f) => f.endsWith('.wasm')).sort()) {
      const bytes = fs.readFileSync(path.join(dir, f));
      const gzBytes = zlib.gzipSync(bytes, { level: 9 }).length;
      const { instance } = await WebAssembly.instantiate(bytes, {});
      const x = instance.exports;
      const p = x.alloc(sample.length);
      new Uint8Array(x.memory.buffer, p, sample.length).set(sample);
      const row = { name: f, wasm: bytes.length, gz: gzBytes, addsGz: gzBytes - base };
      for (const level of [1, 6]) {
        const n = x.run(p, sample.length, level);
        const got = Buffer.from(new Uint8Array(x.memory.buffer, x.out_ptr(), n));
        let okRound = false;
        try {
          okRound = zlib.gunzipSync(got).equals(sample);
        } catch {}
        row[`l${level}`] = { bytes: n, us: timeIt(() => x.run(p, sample.length, level)), ok: okRound };
      }
      out.wasm.push(row);
    }
    out.wasm.push({ name: 'fflate gzipSync (JS, what posthog-js uses)', l1: { bytes: gzipSync(sample, { level: 1 }).length, us: timeIt(() => gzipSync(sample, { level: 1 })), ok: true }, l6: { bytes: gzipSync(sample, { level: 6 }).length, us: timeIt(() => gzipSync(sample, { level: 6 })), ok: true } });
    out.wasm.push({ name: 'node zlib (native, reference)', l1: { bytes: zlib.gzipSync(sample, { level: 1 }).length, us: timeIt(() => zlib.gzipSync(sample, { level: 1 })), ok: true }, l6: { bytes: zlib.gzipSync(sample, { level: 6 }).length, us: timeIt(() => zlib.gzipSync(sample, { level: 6 })), ok: true } });
    out.sampleBytes = sample.length;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Main.

const env = await startServers();
const cmd = `node bench/pagehide.mjs ${argv.join(' ')}`.trim();
const out = [];
console.log(`# ${cmd}\n# runs per cell: ${RUNS}; ${new Date().toISOString()}\n`);

if (want('compress')) {
  const c = await compress();
  out.push(table('gzip ratio, 10,000 events as PostHog batch bodies', cmd, ['batches of', 'bodies', 'JSON bytes', 'gzip -6', 'ratio', 'gzip -1', 'ratio'], c.rows, [`The events' own JSON: ${fmt(c.eventsJson)} bytes.`]));
  if (c.wasm.length) {
    out.push(table(`Synchronous gzip of one ${fmt(c.sampleBytes)}-byte body (node ${process.version}, median of 60)`, cmd, ['compressor', 'wasm bytes', 'gzipped', 'adds (gz) over an empty crate', 'level 1: bytes / µs', 'level 6: bytes / µs', 'round-trips'],
      c.wasm.map((w) => [w.name, w.wasm ? fmt(w.wasm) : '—', w.gz ? fmt(w.gz) : '—', w.addsGz != null ? fmt(w.addsGz) : '—', `${fmt(w.l1.bytes)} / ${Math.round(w.l1.us)}`, `${fmt(w.l6.bytes)} / ${Math.round(w.l6.us)}`, String(w.l1.ok && w.l6.ok)])));
  }
  if (want('workers')) {
    const w = await workerd();
    out.push(table('CompressionStream in workerd (miniflare)', cmd, ['result'], [[JSON.stringify(w)]]));
  }
}

for (const kind of BROWSERS) {
  const sections = ['quota', 'nav', 'hooks', 'gzip', 'scale', 'posthog', 'design', 'storage', 'workers'];
  if (!sections.some(want)) break;
  const browser = await openBrowser(kind);
  const B = `${kind} ${browser.version}${kind === 'firefox' || opt('--latency-via', 'cdp') === 'proxy' ? ', latency via a delaying TCP proxy' : ', latency via CDP'}${flag('--bfcache') ? ' (bfcache on)' : ''}${flag('--close') ? ' (tab closed)' : ''}${flag('--cross-site') ? ' (cross-site navigation)' : ''}`;
  console.log(`## ${B}\n`);
  try {
    if (want('workers')) {
      const w = await workers(env, browser);
      out.push(table(`CompressionStream, ${B}`, cmd, ['where', 'result'], [['window', JSON.stringify(w.window)], ['dedicated worker', JSON.stringify(w.worker)]]));
    }
    if (want('storage')) {
      const s = await storage(env, browser);
      out.push(table(`localStorage, ${B}`, cmd, ['measure', 'value'], Object.entries(s).map(([k, v]) => [k, typeof v === 'number' ? (Number.isInteger(v) ? fmt(v) : v.toFixed(2)) : String(v)])));
    }
    if (want('quota')) {
      const q = await quota(env, browser);
      out.push(table(`What one synchronous loop gets accepted (in a live page), ${B}`, cmd, ['probe', 'accepted'], Object.entries(q).map(([k, v]) => [k, String(v)])));
    }
    const navTable = async (title, cfgs, notes) => {
      const rows = [];
      for (const [label, cfg] of cfgs) {
        if (opt('--only', null) && !new RegExp(opt('--only')).test(label)) continue;
        const c = await cell(env, browser, cfg);
        const d = describe(c);
        rows.push([label, d.delivered, d.detail, d.page, d.hooks]);
        console.error(`  ${kind} ${label}: ${d.delivered} — ${d.detail} — ${d.page}`);
      }
      out.push(table(`${title}, ${B}`, cmd, ['configuration', 'delivered worst (best)', 'collector saw (worst run)', 'page (worst run)', 'hooks fired'], rows, notes));
    };
    if (want('nav')) {
      const cfgs = [];
      for (const transport of ['beacon', 'fetch'])
        for (const kb of [8, 14, 32, 60]) cfgs.push([`3,000 held, ${transport === 'fetch' ? 'keepalive fetch' : 'sendBeacon'} ${kb} KB bodies, one loop at pagehide`, { transport, size: kb * 1024 }]);
      cfgs.push(['3,000 held, sendBeacon 14 KB, rest as plain fetch (posthog-js style)', { transport: 'beacon', size: 14 * 1024, fallback: 'plain' }]);
      cfgs.push(['3,000 held, sendBeacon 14 KB, rest as plain fetch, 80 ms', { transport: 'beacon', size: 14 * 1024, fallback: 'plain', latency: 80 }]);
      cfgs.push(['3,000 held, sendBeacon 14 KB, rest as plain fetch, then the handler spins 3 s', { transport: 'beacon', size: 14 * 1024, fallback: 'plain', spinMs: 3000 }]);
      cfgs.push(['3,000 held, keepalive fetch 60 KB, no page budget (browser decides)', { transport: 'fetch', size: 60 * 1024, budget: 1e12 }]);
      await navTable('Transport and body size at pagehide (N = 3,000, 0 ms)', cfgs);
    }
    if (want('hooks')) {
      const cfgs = [];
      for (const start of ['pagehide', 'visibilitychange', 'beforeunload'])
        for (const latency of [0, 80]) cfgs.push([`beacon 14 KB, one loop at ${start}, ${latency} ms`, { start, latency }]);
      for (const latency of [0, 80]) {
        cfgs.push([`keepalive 14 KB chained (4 in flight) from pagehide, ${latency} ms`, { transport: 'fetch', strategy: 'chain', conc: 4, start: 'pagehide', latency }]);
        cfgs.push([`keepalive 14 KB chained (4 in flight) from beforeunload, ${latency} ms`, { transport: 'fetch', strategy: 'chain', conc: 4, start: 'beforeunload', latency }]);
        cfgs.push([`keepalive 14 KB chained from beforeunload, then beacon loop at pagehide, ${latency} ms`, { transport: 'fetch', strategy: 'chain', conc: 4, start: 'beforeunload', final: 'pagehide', finalTransport: 'beacon', latency }]);
      }
      await navTable('When sending starts (N = 3,000)', cfgs);
    }
    if (want('gzip')) {
      const cfgs = [];
      for (const latency of [0, 80])
        for (const n of [3000, 10000]) {
          cfgs.push([`N=${fmt(n)}, beacon 14 KB plain, ${latency} ms`, { n, latency }]);
          cfgs.push([`N=${fmt(n)}, beacon 14 KB gzip (sync, fflate), ${latency} ms`, { n, latency, gzip: true }]);
          cfgs.push([`N=${fmt(n)}, beacon 60 KB gzip, ${latency} ms`, { n, latency, gzip: true, size: 60 * 1024 }]);
        }
      await navTable('gzip at pagehide', cfgs);
    }
    if (want('posthog')) {
      const cfgs = [];
      for (const n of [1000, 3000, 10000]) for (const latency of [0, 80]) cfgs.push([`posthog-js, N=${fmt(n)}, ${latency} ms`, { kind: 'posthog', n, latency }]);
      cfgs.push(['posthog-js gzip-js, N=3,000, 0 ms', { kind: 'posthog', n: 3000, gzip: true }]);
      await navTable('posthog-js 1.449 (same page shape)', cfgs, ['posthog-js config as bench/pages/bench.js (memory persistence, no remote config, so no gzip unless stated).']);
    }
    if (want('design')) {
      const design = { gzip: true, size: 13 * 1024, transport: 'fetch', strategy: 'chain', conc: 4, budget: 64 * 1024, start: 'beforeunload', final: 'pagehide', finalTransport: 'beacon', persist: true };
      const cfgs = [];
      for (const n of [1000, 3000, 10000]) for (const latency of [0, 80]) cfgs.push([`proposed, N=${fmt(n)}, ${latency} ms`, { ...design, n, latency }]);
      await navTable('Proposed page-hide path: gzip ~13 KB wire bodies; beforeunload starts a keepalive chain; pagehide beacons the rest up to quota and persists what is left to localStorage for the next load', cfgs);
    }
    if (want('scale')) {
      const cfgs = [];
      for (const n of [1000, 3000, 10000]) for (const latency of [0, 80]) cfgs.push([`beacon 14 KB plain at pagehide, N=${fmt(n)}, ${latency} ms`, { n, latency }]);
      await navTable('Scale: one beacon loop at pagehide', cfgs);
    }
  } finally {
    await browser.close();
  }
}
env.close();
const file = opt('--out', null);
if (file) fs.writeFileSync(file, out.join('\n'));
process.exit(0); // the delaying proxies and idle keep-alive sockets would hold the loop open
