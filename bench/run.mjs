//! spool's benchmarks, side by side with posthog-js and a plain-JS floor, in one run.
//!
//!   node bench/run.mjs            every figure; prints the tables and writes BENCHMARKS.md
//!   node bench/run.mjs --quick    the same code on small counts, one run (a smoke: about four
//!                                 minutes, figure 7 three of them); writes nothing unless --out is given
//!   options: --runs N  --out FILE  --only 1,2,3,4,5,6,7,8
//!
//! Figures: 1 capture cost, 2 bytes shipped, 3 requests and bytes on the wire, 4 latency, 5
//! memory, 6 edge CPU, 7 events delivered when the page leaves (same-site and cross-site
//! navigation, tab closed; at close and from the next load; in Chromium, Firefox ESR and
//! WebKit), 8 bytes on the wire with compression (7 and 8: bench/close.mjs).
//!
//! `make bench` builds the release package first and runs the first form. Everything runs on
//! this machine: headless Chromium (playwright-core, /usr/bin/chromium) and workerd (miniflare)
//! against tools/collector.mjs on 127.0.0.1; figure 7 also headless Firefox ESR
//! (puppeteer-core) and WebKitGTK's MiniBrowser (WebKitWebDriver, under Xvfb). Every comparison is a ratio measured in the same
//! run, the contenders alternating (run r starts with a different one), over several runs,
//! reported as the median with the spread (min–max) in brackets.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { launchBrowser, startCollector } from '../tests/e2e/harness.mjs';
import { BUDGET_GZIP, measureSizes } from './sizes.mjs';
import { measureCode } from './crate-sizes.mjs';
import { captureCost, longestTasks, wire, latency, memory, CAPTURE_CONTENDERS, LATENCY_CONTENDERS } from './browser.mjs';
import { ENGINES, PATHS, WAYS, pageClose, pkgSupports, startSink, wireContenders } from './close.mjs';
import { edgeCpu, hasWithTelemetry } from './edge.mjs';
import { bytes, num, spread, table } from './stats.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

const args = process.argv.slice(2);
const flag = (name) => args.includes(`--${name}`);
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const QUICK = flag('quick');
const RUNS = Number(opt('runs', QUICK ? 1 : 3));
const ONLY = new Set(String(opt('only', '1,2,3,4,5,6,7,8')).split(',').map(Number));
const OUT = opt('out', QUICK || ONLY.size < 8 ? null : 'BENCHMARKS.md');

/** The counts, full and quick. */
const N = QUICK
  ? { capture: 5_000, trace: 500, traceOff: 200, wire: 500, memory: 5_000, posthogMemory: 1_000, edgeRequests: 200 }
  : { capture: 100_000, trace: 10_000, traceOff: 2_000, wire: 10_000, memory: 100_000, posthogMemory: 10_000, edgeRequests: 1_000 };
const RATES = QUICK
  ? [{ perSecond: 1, seconds: 2 }, { perSecond: 100, seconds: 1 }, { perSecond: 10_000, seconds: 0.03 }]
  : [{ perSecond: 1, seconds: 20 }, { perSecond: 100, seconds: 10 }, { perSecond: 10_000, seconds: 1 }];
/**
 * Figure 7's cells: each browser, way of leaving, events held and latency, with the contenders
 * it runs and how many runs each. Chromium keeps the same-site rows figure 7 always had (every
 * contender, every N at 0 and 80 ms); the other ways, Firefox ESR and WebKit run fewer cells
 * (N = 1,000 and 3,000 for the goals, 10,000 for the longest task at close) with spool beside
 * posthog-js as PostHog Cloud runs it (gzip-js). The `warm` cells have the collector answer a
 * first flush before the N are captured (spool arms `fetchLater` only then), spool alone,
 * but for the usual last moments of a page (20 and 300 events, three runs, beside posthog-js).
 * The `stalled` cells then stop answering, and the page holds the N two seconds before it
 * leaves (events held a while, as behind a slow collector), spool beside posthog-js.
 * The `refusing` cells have the collector refuse everything (503) from the capture until the
 * next load, spool beside spool with `persist: false` and posthog-js: what the stored copy
 * keeps, and what a page that keeps nothing loses (spool with `persist: false` also runs a
 * tab closed 80 ms from a collector that takes everything, where the copy's repeats show).
 * The full plan is 113 runs of 4 to 35 s (posthog-js without compression holds a navigation
 * for 26 s at 10,000 events): about 10 minutes on the 2-core bench machine.
 */
// One run per cell unless --runs says otherwise: the cells are many, and --runs 3 would take
// three times as long.
const CLOSE_RUNS = Number(opt('runs', 1));
/** How late the collector on the page's own origin answers, in figure 7's same-origin cells. */
const SLOW_MS = 500;
function closeCells() {
  const all = ['spool', 'posthog', 'posthog-gzip'];
  const two = ['spool', 'posthog-gzip'];
  const kept = ['spool', 'spool-nopersist', 'posthog-gzip'];
  const cells = [];
  const add = (engine, way, at, contenders, extra = {}) => {
    for (const [n, latencyMs] of at) cells.push({ engine, way, n, latencyMs, contenders, runs: CLOSE_RUNS, ...extra });
  };
  if (QUICK) {
    add('chromium', 'nav', [[1_000, 0], [1_000, 80]], all);
    add('chromium', 'cross', [[1_000, 0]], all);
    add('chromium', 'tab', [[1_000, 0]], all);
    add('chromium', 'nav', [[1_000, 0]], ['spool'], { warm: true });
    for (const engine of ['firefox', 'webkit']) for (const way of ['nav', 'cross', 'tab']) add(engine, way, [[1_000, 0]], two);
    return cells;
  }
  add('chromium', 'nav', [[1_000, 0], [1_000, 80], [3_000, 0], [3_000, 80], [10_000, 0], [10_000, 80]], all);
  add('chromium', 'cross', [[1_000, 0], [3_000, 0], [3_000, 80], [10_000, 0]], all);
  add('chromium', 'tab', [[1_000, 0], [3_000, 0]], all);
  // A tab closed 80 ms from its collector goes before any answer can come: spool with
  // `persist: false` beside it shows what the stored copy's repeats are.
  add('chromium', 'tab', [[3_000, 80]], [...all, 'spool-nopersist']);
  add('chromium', 'tab', [[10_000, 0]], all);
  for (const way of ['nav', 'cross', 'tab']) add('chromium', way, [[3_000, 0]], ['spool'], { warm: true });
  for (const engine of ['firefox', 'webkit']) {
    for (const way of ['nav', 'cross']) add(engine, way, [[1_000, 0], [3_000, 80], [10_000, 0]], two);
    add(engine, 'tab', [[1_000, 0]], two);
    add(engine, 'tab', [[3_000, 80]], engine === 'webkit' ? kept : two);
    add(engine, 'tab', [[10_000, 0]], two);
    for (const way of ['nav', 'tab']) add(engine, way, [[3_000, 0]], ['spool'], { warm: true });
  }
  // A page's usual last moments: a few events captured as it leaves, the collector having
  // answered before (the longest lifecycle dispatch is then the page's own unload cost).
  add('chromium', 'nav', [[20, 0], [300, 0]], two, { warm: true, runs: 3 });
  // Held a while behind a stalled collector: where packing ahead leaves little to do at close.
  for (const engine of ['chromium', 'firefox', 'webkit']) add(engine, 'nav', [[10_000, 0]], two, { warm: true, stalled: true });
  add('chromium', 'tab', [[10_000, 0]], two, { warm: true, stalled: true });
  // The collector on the page's own origin, answering in 500 ms: what the page's requests
  // leave of the host's six HTTP/1.1 connections for the navigation's own request.
  for (const engine of ['chromium', 'webkit']) add(engine, 'nav', [[1_000, 0], [3_000, 0]], two, { slowMs: SLOW_MS });
  // A collector that refuses as the page leaves, before it answered anything: the stored copy
  // is what delivers these, and what repeats in the cells above where the collector took them.
  for (const engine of ['chromium', 'webkit']) add(engine, 'nav', [[1_000, 0]], kept, { refusing: true });
  return cells;
}
/**
 * Which of `persist` and `compression` the built package knows (pkg/spool.d.ts). spool is given
 * them only then, so the figures run on a package from before and after they exist.
 */
const SUPPORTS = pkgSupports(ROOT);
/**
 * Figures 3 and 4 count events at tools/collector.mjs, which reads gzip only with a
 * Content-Encoding header: where spool knows `compression`, they measure it with "none" (the
 * plain-JSON path their goals were set for), and figure 8 measures the compressed wire.
 */
const plain = (contenders) =>
  contenders.map((c) => (c.kind === 'spool' && SUPPORTS.compression ? { ...c, label: `${c.label} (compression none)`, options: { ...c.options, compression: 'none' } } : c));
/** The collector answers after this long in figure 4, standing in for a network round trip. */
const RTT_MS = 50;
/** How long figure 4 waits, after the last capture, for the last event to arrive. */
const LATENCY_WAIT_MS = QUICK ? 2_000 : 10_000;

// The goals from the issue; each is printed with its verdict.
const GOAL = {
  captureVsFloor: 1, // spool's µs/capture at most the floor's
  posthogOverSpool: 50, // posthog-js at least 50 times spool's µs/capture
  gzipBytes: BUDGET_GZIP, // wasm + glue (with any snippets), gzipped: the page budget
  wireRatio: 1.1, // bytes on the wire / the events' own JSON
  gzipWireRatio: 0.25, // bytes on the wire with compression / the events' own JSON
  closeFullUpTo: 3_000, // page close: every event delivered (at close or from the next load) up to this N
  closeHeldOverMs: 50, // page close, collector on the page's origin: beforeunload to pagehide, over posthog-js's
  closeRepeats: 0.1, // page close: arrivals of a uuid already received, at most this share of N per cell
  closeTaskMs: 10, // page close: the contender's longest lifecycle dispatch with the most events held
  edgeOverhead: 0.1, // withTelemetry adds at most 10 % CPU to a trivial handler
};
/** spool's default maxBatchEvents. */
const MAX_BATCH_EVENTS = 500;

const T0 = Date.now();
const log = (line) => console.log(`[${String(Math.round((Date.now() - T0) / 1000)).padStart(3)} s] ${line}`);
const runs = (n) => `${n} run${n === 1 ? '' : 's'}`;

async function main() {
  const started = Date.now();
  const env = environment();
  log(`spool bench${QUICK ? ' (quick)' : ''}: ${runs(RUNS)} per comparison, on ${env.machine}`);
  log(`pkg knows persist: ${SUPPORTS.persist ? 'yes' : 'no'}, compression: ${SUPPORTS.compression ? 'yes' : 'no'}`);
  if (!fs.existsSync(path.join(ROOT, 'pkg', 'spool_bg.wasm'))) {
    throw new Error('pkg/ is not built: run `make build` (or `make bench`) first');
  }
  const results = {};
  if (ONLY.has(2)) {
    log('2. bytes shipped');
    results.sizes = measureSizes(ROOT);
    try {
      results.code = measureCode(ROOT);
    } catch (e) {
      log(`2. the wasm by crate and module left out (\`cargo install twiggy\`?): ${e.message}`);
    }
  }

  const collector = await startCollector({ port: 0, host: '127.0.0.1', root: ROOT });
  // Figures 7 and 8 send to a sink on another origin that decodes gzip and posthog-js's forms.
  const sink = await startSink();
  const browser = await launchBrowser();
  env.versions.Chromium = browser.version();
  try {
    if (ONLY.has(1)) {
      log(`1. capture cost: ${N.capture.toLocaleString('en-US')} captures, ${runs(RUNS)}`);
      results.capture = await captureCost(browser, collector, { n: N.capture, runs: RUNS, log });
      log(`1. longest task outside the capture loop: ${N.trace.toLocaleString('en-US')} captures, traced`);
      results.tasks = await longestTasks(browser, collector, { n: N.trace, offN: N.traceOff, log });
    }
    if (ONLY.has(3)) {
      log(`3. wire: ${N.wire.toLocaleString('en-US')} events, ${runs(RUNS)}`);
      results.wire = await wire(browser, collector, { n: N.wire, runs: RUNS, log, contenders: plain(CAPTURE_CONTENDERS.filter((c) => c.kind !== 'floor')) });
    }
    if (ONLY.has(4)) {
      log(`4. latency at ${RATES.map((r) => r.perSecond).join(', ')} events/s, collector answering after ${RTT_MS} ms`);
      results.latency = await latency(browser, collector, { rates: RATES, rttMs: RTT_MS, waitMs: LATENCY_WAIT_MS, log, contenders: plain(LATENCY_CONTENDERS) });
    }
    if (ONLY.has(5)) {
      log(`5. memory: ${N.memory.toLocaleString('en-US')} events held`);
      results.memory = await memory(browser, collector, { n: N.memory, posthogN: N.posthogMemory, log });
    }
    if (ONLY.has(7)) {
      const cells = closeCells();
      log(`7. page close: ${cells.length} cells (browser, way of leaving, events held, latency), ${cells.reduce((a, c) => a + c.runs * c.contenders.length, 0)} runs`);
      results.close = await pageClose(browser, collector, sink, { cells, supports: SUPPORTS, log });
      env.versions['Firefox ESR (figure 7)'] = results.close.versions.firefox ?? 'not run';
      env.versions['WebKit (figure 7)'] = results.close.versions.webkit ?? 'not run';
    }
    if (ONLY.has(8)) {
      log(`8. wire with compression: ${N.wire.toLocaleString('en-US')} events, ${runs(RUNS)}`);
      results.wireGzip = await wire(browser, collector, { n: N.wire, runs: RUNS, log, contenders: wireContenders(SUPPORTS), sink });
    }
  } finally {
    await browser.close();
    await sink.close();
  }
  try {
    if (ONLY.has(6)) {
      log(`6. edge: ${N.edgeRequests.toLocaleString('en-US')} requests per run, ${RUNS * 2} runs`);
      collector.control.reset();
      results.edge = await edgeCpu({ root: ROOT, collector, requests: N.edgeRequests, runs: RUNS * 2, log });
    }
  } finally {
    await collector.close();
  }

  env.seconds = Math.round((Date.now() - started) / 1000);
  const report = render(results, env);
  console.log('');
  console.log(report);
  if (OUT) {
    fs.writeFileSync(path.resolve(ROOT, OUT), report);
    log(`\nwritten to ${OUT}`);
  }
}

// --- the report ----------------------------------------------------------------------------

function render(r, env) {
  const out = [];
  const goals = [];
  out.push('# spool benchmarks', '');
  out.push(
    `Generated by \`make bench\` (\`node bench/run.mjs${QUICK ? ' --quick' : ''}\`, ${env.seconds} s) on ${env.date}. ` +
      'Each comparison is measured in the same run, the contenders alternating, each measurement in a fresh ' +
      'browser context; figures are the median over the runs with the spread (min–max) in brackets. ' +
      'Everything ran on this machine, against the local collector (`tools/collector.mjs`) on 127.0.0.1.',
    '',
  );
  out.push('## Machine and versions', '');
  out.push(table(['', ''], Object.entries(env.versions).map(([k, v]) => [k, v])));
  out.push('');

  const goalIndex = out.length;

  if (r.capture) {
    const c = r.capture;
    const byId = Object.fromEntries(c.rows.map((x) => [x.id, x]));
    out.push('## 1. Main-thread cost per capture', '');
    out.push(
      `${c.n.toLocaleString('en-US')} captures of \`"bench_event"\` with \`{ i, path: "/checkout", plan: "pro", amount: 42.5 }\`, ` +
        `${c.chunk} per task (the loop yields between chunks, so timers and responses run in between, as in a page); ` +
        `the time inside the chunks over the events. ${runs(c.runs)}. ` +
        '"× floor" and "posthog-js ÷" are ratios within each run. The longest task outside the loop is from a Chromium trace of ' +
        `${r.tasks?.n.toLocaleString('en-US')} captures and their delivery: the contender's own timers, sends and responses.`,
      '',
    );
    out.push(
      table(
        ['contender', 'µs / capture', '× floor', 'posthog-js ÷ this', 'longest 100-capture task (ms)', 'longest task outside the loop (ms)', 'tasks ≥ 50 ms'],
        c.rows.map((x) => [
          x.label,
          spread(x.us),
          spread(x.vsFloor),
          x.id === 'posthog' ? '1' : spread(x.posthogOver),
          spread(x.maxChunk),
          r.tasks?.byId[x.id]
            ? `${num(r.tasks.byId[x.id].longestMs)}${r.tasks.byId[x.id].events !== r.tasks.n ? ` (${r.tasks.byId[x.id].events.toLocaleString('en-US')} captures)` : ''}`
            : 'n/a',
          x.longTaskMax > 0 ? `yes (longest ${num(x.longTaskMax)} ms)` : 'none',
        ]),
      ),
      '',
    );
    for (const id of ['spool-linger', 'spool-auto', 'spool-off']) {
      const x = byId[id];
      goals.push([`capture cost ≤ the floor (${x.label})`, `${spread(x.vsFloor)} × floor`, x.vsFloor.median <= GOAL.captureVsFloor]);
    }
    for (const id of ['spool-linger']) {
      const x = byId[id];
      goals.push([`capture cost ≥ 50 × below posthog-js (${x.label})`, `posthog-js ÷ spool = ${spread(x.posthogOver)}`, x.posthogOver.median >= GOAL.posthogOverSpool]);
    }
  }

  if (r.sizes) {
    const s = r.sizes;
    out.push('## 2. Bytes shipped to the browser', '');
    out.push('Each file compressed on its own (as a server sends it): gzip level 9 and brotli 11.', '');
    const slim = s.posthog.find((p) => p.name.endsWith('module.slim.js'));
    const rows = [
      ...s.spool.parts.map((p) => [p.name, p.raw, p.gzip, p.brotli, '']),
      ['**spool total (wasm + glue)**', s.spool.total.raw, s.spool.total.gzip, s.spool.total.brotli, ''],
      ...s.posthog.map((p) => [p.name, p.raw, p.gzip, p.brotli, p.note]),
    ].map(([name, raw, gz, br, note]) => [
      name,
      raw.toLocaleString('en-US'),
      `${gz.toLocaleString('en-US')} (${(gz / 1024).toFixed(1)} KiB)`,
      `${br.toLocaleString('en-US')} (${(br / 1024).toFixed(1)} KiB)`,
      note,
    ]);
    out.push(table(['file', 'raw bytes', 'gzip bytes', 'brotli bytes', ''], rows), '');
    if (slim) out.push(`spool is ${num(s.spool.total.gzip / slim.gzip, 2)} × posthog-js's slim bundle, gzipped.`, '');
    if (r.code) {
      out.push(
        "The page's wasm by the crate its code comes from and by spool module (`node bench/crate-sizes.mjs` prints the same): " +
          "twiggy's shallow bytes, raw, on the release wasm with its names kept. Inlined code counts where it was inlined to; " +
          'a module counts every function that names it, the generic code of other crates made for its types included.',
        '',
      );
      const rows = (list) => list.map(([name, bytes]) => [name.startsWith(' ') ? `· ${name.trim()}` : name, bytes.toLocaleString('en-US')]);
      out.push(table(['crate', 'raw bytes'], rows(r.code.crates)), '');
      out.push(table(['spool module', 'raw bytes'], rows(r.code.modules)), '');
    }
    goals.push([
      'wasm + glue ≤ 36 KiB (36,864 B) gzipped',
      `${s.spool.total.gzip.toLocaleString('en-US')} B (${(s.spool.total.gzip / 1024).toFixed(2)} KiB)`,
      s.spool.total.gzip <= GOAL.gzipBytes,
    ]);
  }

  if (r.wire) {
    const w = r.wire;
    out.push(`## 3. Requests and bytes on the wire per ${w.n.toLocaleString('en-US')} events`, '');
    out.push(
      `${w.n.toLocaleString('en-US')} events captured as fast as the loop goes (100 per task), then delivered (spool: \`flush()\`; posthog-js: its timer). ` +
        'Body bytes as the collector received them; headers as Chromium sent them (HTTP/1.1). ' +
        `The events' own JSON is the floor's records for the same events, \`{event, distinct_id, properties, timestamp, uuid}\`: ` +
        `${w.eventJsonBytes.toLocaleString('en-US')} bytes, ${num(w.eventJsonBytes / w.n)} per event. ` +
        'Main thread is the renderer\'s task time from the first capture to the last event delivered (Chrome DevTools Protocol `Performance.getMetrics`). ' +
        "spool's `off` sends one request per event (seconds per thousand here), so it runs on a tenth of the events, scaled up. " +
        `${runs(w.runs)}.`,
      '',
    );
    out.push(
      table(
        ['contender', 'requests', 'expected ceil(events / maxBatchEvents)', 'events delivered', 'body bytes', 'header bytes / request', 'bytes / event on the wire', 'wire ÷ events\' JSON (body only)', 'main thread µs / event, capture to delivery'],
        w.rows.map((x) => [
          x.measuredOn !== w.n ? `${x.label} (${x.measuredOn.toLocaleString('en-US')} events, × ${num(w.n / x.measuredOn)})` : x.label,
          spread(x.requests),
          x.maxBatchEvents ? Math.ceil(w.n / x.maxBatchEvents).toLocaleString('en-US') : '—',
          spread(x.events),
          spread(x.bodyBytes),
          num(x.headerBytesPerRequest),
          num(x.wireBytes.median / w.n),
          `${spread(x.wireRatio)} (${spread(x.bodyRatio)})`,
          spread(x.mainThread),
        ]),
      ),
      '',
    );
    // Only `linger` waits for full batches: `auto` sends what accumulated while a request was
    // in flight, full or not.
    for (const x of w.rows.filter((x) => x.kind === 'spool' && (x.options.batchMode ?? 'linger') === 'linger')) {
      const expected = Math.ceil(w.n / MAX_BATCH_EVENTS);
      goals.push([`under load, requests = ceil(events / maxBatchEvents) = ${expected} (${x.label})`, `${spread(x.requests)} requests`, x.requests.median === expected]);
    }
    for (const x of w.rows.filter((x) => x.kind === 'spool' && x.options.batchMode !== 'off')) {
      goals.push([`on the wire ≤ 1.1 × the events' JSON (${x.label}, headers included)`, `${spread(x.wireRatio)} ×`, x.wireRatio.median <= GOAL.wireRatio]);
    }
  }

  if (r.latency) {
    const L = r.latency;
    out.push('## 4. Delivery latency and requests, by rate and batch mode', '');
    out.push(
      `Capture (the event's \`timestamp\`) to arrival at the collector, which answers each request after ${L.rttMs} ms (a stand-in for a round trip: ` +
        `\`auto\` batches while a request is in flight). Up to 100 events/s the contenders run at once, each in its own page; faster, one at a time. ` +
        `Nothing calls \`flush()\`: events go when each policy sends them. An event not delivered ${L.waitMs / 1000} s after the last capture counts as never (∞). ` +
        `spool at its defaults otherwise (maxBatchEvents ${MAX_BATCH_EVENTS}, maxInFlight 4): at ${L.rttMs} ms a request, those carry at most ` +
        `${(((4 * MAX_BATCH_EVENTS) / L.rttMs) * 1000).toLocaleString('en-US')} events/s` +
        ((4 * MAX_BATCH_EVENTS * 1000) / L.rttMs < Math.max(...L.rows.map((x) => x.perSecond))
          ? ', which is what bounds every mode at the fastest rate.'
          : ', more than the fastest rate here.'),
      '',
    );
    const rates = [...new Set(L.rows.map((x) => x.perSecond))];
    const header = ['contender', ...rates.flatMap((p) => [`${p.toLocaleString('en-US')}/s p50 / p95 (ms)`, `${p.toLocaleString('en-US')}/s requests per 1,000`])];
    const ids = [...new Set(L.rows.map((x) => x.id))];
    out.push(
      table(
        header,
        ids.map((id) => {
          const rows = L.rows.filter((x) => x.id === id);
          return [
            rows[0].label,
            ...rates.flatMap((p) => {
              const x = rows.find((y) => y.perSecond === p);
              if (!x) return ['n/a', 'n/a'];
              const short = x.achievedPerSecond < 0.9 * p ? ` (captured at ${num(x.achievedPerSecond)}/s)` : '';
              const lost = x.delivered < x.events ? `, ${x.delivered}/${x.events} delivered` : '';
              return [`${num(x.p50)} / ${num(x.p95)}${short}${lost}`, num(x.requestsPer1000)];
            }),
          ];
        }),
      ),
      '',
    );
    out.push(...recommendation(L), '');
  }

  if (r.memory) {
    const m = r.memory;
    out.push('## 5. Memory per held event', '');
    out.push(
      'The collector stalls every request, so every captured event stays held (queued, or in a request in flight). ' +
        "spool: growth of its wasm linear memory (`init()`'s `exports.memory`; it grows in 64 KiB pages and never shrinks). " +
        'All: growth of the JS heap after a forced GC (Chrome DevTools Protocol `HeapProfiler.collectGarbage`, `Runtime.getHeapUsage`).',
      '',
    );
    out.push(
      table(
        ['contender', 'events held', 'wasm memory before → after', 'wasm bytes / event', 'JS heap bytes / event'],
        m.rows.map((x) => [
          x.label,
          `${x.held.toLocaleString('en-US')}${x.dropped ? ` (${x.dropped} dropped)` : ''}`,
          x.wasmBefore === null ? '—' : `${x.wasmBefore.toLocaleString('en-US')} → ${x.wasmAfter.toLocaleString('en-US')}`,
          x.wasmPerEvent === null ? '—' : num(x.wasmPerEvent),
          num(x.jsHeapPerEvent),
        ]),
      ),
      '',
    );
    if (r.wire) out.push(`For scale: one event's own JSON is ${num(r.wire.eventJsonBytes / r.wire.n)} bytes.`, '');
  }

  if (r.edge) {
    const e = r.edge;
    out.push('## 6. Edge: CPU time per request with and without `withTelemetry`', '');
    out.push(
      'A trivial Worker (`return new Response("ok")`) in workerd through miniflare, served requests one after another; CPU time of the ' +
        'workerd process (user + system, /proc) over the requests and until the last event has reached the collector, which includes ' +
        'workerd\'s own HTTP handling and everything the middleware causes (its batches sent in `waitUntil`). withTelemetry sends ' +
        'the events of each batching window (`flushIntervalMs`, 1 s by default) together, from the `waitUntil` of the request that opened the window. ' +
        `${e.requests.toLocaleString('en-US')} requests per run, ${runs(e.runs)}, the variants alternating.`,
      '',
    );
    const na = !e.telemetry ? 'n/a (withTelemetry not built)' : e.error ? `n/a (${e.error})` : null;
    out.push(
      table(
        ['handler', 'CPU µs / request', '÷ trivial handler', '÷ plain-JS fetch floor'],
        [
          ['trivial handler', spread(e.plain), '1', '—'],
          ['the same, posting its event with plain `fetch` in `waitUntil` (the floor for one collector request per Worker request)', spread(e.fetch), spread(e.fetchRatio, 3), '1'],
          ['the same, wrapped in `withTelemetry`', na ?? spread(e.withTelemetry), na ?? spread(e.ratio, 3), na ?? spread(e.overFetch, 3)],
        ],
      ),
      '',
    );
    if (e.wire?.fetch) {
      const row = (name, w) => [name, w ? spread(w.requests) : 'n/a', w ? `${num(w.p50)} / ${num(w.p95)}` : 'n/a'];
      out.push(
        `What reaches the collector per run of ${e.requests.toLocaleString('en-US')} Worker requests (each collector request is one of the Worker's subrequests), ` +
          "and each event's time from its request to its arrival at the collector:",
        '',
        table(
          ['handler', 'collector requests per run', 'capture to collector, p50 / p95 ms'],
          [row('plain `fetch` in `waitUntil`', e.wire.fetch), row('`withTelemetry`', e.wire.telemetry)],
        ),
        '',
      );
    }
    goals.push([
      'edge middleware adds ≤ 10 % CPU to a trivial handler',
      na ?? `${e.ratio.median >= 1 ? '+' : '−'}${num(Math.abs(e.ratio.median - 1) * 100)} %`,
      na ? null : e.ratio.median - 1 <= GOAL.edgeOverhead,
    ]);
  }

  if (r.close) {
    const c = r.close;
    const fmt = (x) => x.toLocaleString('en-US');
    const spoolLabel = c.contenders.find((x) => x.id === 'spool');
    const keys = Object.keys(spoolLabel.options);
    const runsOf = (rows) => {
      const counts = [...new Set(rows.map((x) => x.runs))];
      return counts.length === 1 ? runs(counts[0]) : `${Math.min(...counts)} to ${Math.max(...counts)} runs`;
    };
    const wayLabel = (x) =>
      `${WAYS[x.way].label}${x.stalled ? ', collector answered first, then stalled, held 2 s' : x.warm ? ', collector answered first' : ''}` +
      `${x.slowMs ? `, collector on the page's origin answering in ${x.slowMs} ms` : ''}` +
      `${x.refusing ? ', collector refusing (503) until the next load' : ''}`;
    const pct = (a, n) => `${num((a / n) * 100, 2)} %`;
    out.push('## 7. Events delivered when the page leaves', '');
    out.push(
      `The page captures N events in one task (\`{ i, path: "/checkout", plan: "pro", amount: 42.5 }\`, as figure 1) and, at the end of that task, leaves: ` +
        'it navigates to the next page of the same site (`location.href`, a click on a link after a busy moment), or to a page of another site ' +
        '(http://localhost, the page being on http://127.0.0.1), or its tab is closed (by the driver, as soon as the capturing task has returned, ' +
        "with `beforeunload` run where the driver can: WebKit's WebDriver Close Window fires none). Each contender runs at its defaults, sending " +
        "cross-origin to a collector on 127.0.0.1 that decodes gzip and posthog-js's base64 form and counts distinct event uuids. " +
        '"At close" is what arrived once the collector had been quiet for 1.5 s after the leaving; then the bench page opens again on its origin in the same ' +
        'browser context (for a same-site navigation, the page it navigated to; otherwise in the same tab, or a new one for a closed tab), sets up the same contender ' +
        '(same key, same endpoint) and, for spool, calls `flush()`: "next load" is the total once quiet again (for spool, with events still missing, ' +
        'the next page stays open up to 13 s: spool takes in a stored copy its page did not mark gone only once 10 s have passed since it was written). ' +
        'Chromium is headless Chromium (playwright-core, latency by CDP `Network.emulateNetworkConditions` on the page, navigation included); Firefox ESR is ' +
        'headless, driven by puppeteer-core over WebDriver BiDi; WebKit is WebKitGTK\'s MiniBrowser driven by WebKitWebDriver (WebDriver classic) under Xvfb; ' +
        'in these two, latency is a TCP proxy in front of the page\'s origin and the collector that delays every chunk by half the round trip each way. ' +
        `Each cell is the worst of ${runsOf(c.rows)} (fewest after the next load), the best in brackets, then: ` +
        '**repeats**, arrivals of a uuid the collector had already received (from requests unanswered at unload sent again), the most of the runs, and in brackets those that arrived at close (the rest came with the next load: what the page sent as it left and could not show the collector took, having had no answer from it, it stored, and the next load sent again); ' +
        "**the next page's delay**, the longest of the runs: for a navigation, from `location.href = next` in the old page to the end of the next document's " +
        "`load` event (both by the pages' wall clock), which includes whatever the old page's `beforeunload` and `pagehide` listeners hold the navigation for; " +
        "for a closed tab, from the driver's close command to the driver seeing the tab gone; " +
        "**the longest lifecycle dispatch**, the most time the contender's own listeners took for one `beforeunload`, `pagehide`, `visibilitychange` or " +
        "`freeze` event, the longest of the runs. It is timed in the bench page by wrapping `EventTarget.prototype.addEventListener` before the contender " +
        'loads (both spool, through its wasm-bindgen glue, and posthog-js add their listeners through it) and stored in localStorage after every listener, ' +
        "where the next load on the origin reads it: a PerformanceObserver for `longtask` would not do, as it reports only tasks of 50 ms or more, in Chromium " +
        "only, and its entries go with the page. It is the contender's JavaScript and wasm in those listeners (a `sendBeacon` or `fetch` call's own cost included), not the " +
        "browser's work outside them; Firefox and WebKit round `performance.now()` to 1 ms. \"cut\" marks a run where the page went in the middle of a listener (its time is then not counted). " +
        `spool ${keys.length ? `is given ${keys.map((k) => `\`${k}: ${JSON.stringify(spoolLabel.options[k])}\``).join(', ')}` : 'is given no page-close keys: this build knows neither `persist` nor `compression`'}. ` +
        'posthog-js keeps nothing for a next load (its request and retry queues have no storage), so its two numbers are the same unless it sent late. ' +
        'In the rows "collector answered first" the collector has answered a first flush of 10 events before the N are captured (spool arms `fetchLater` ' +
        'deferred requests in Chromium only after a success); those 10 are left out of every count. Nothing can be answered inside the capturing task, so ' +
        'a collector stalling from then on would change nothing here. ' +
        `In the rows "collector on the page's origin answering in ${SLOW_MS} ms" the page and its collector are one origin (a proxy on 127.0.0.1 serves the ` +
        'pages and passes every other request to the collector), which answers every body that late from the capture on; **held** is the time from ' +
        '`beforeunload` to `pagehide` by the page\'s wall clock, each taken as its dispatch began, before any contender\'s listener: a navigation commits, ' +
        "and `pagehide` fires, once the next document's answer is in, and a page whose requests take the host's six HTTP/1.1 connections holds it. " +
        'In the rows "collector refusing (503) until the next load" the collector answers every body with a 503 from the capture on (those events are not ' +
        'counted as arrived) and takes them again once the next load has begun: the page leaves before any answer, as in the rows without "answered first", ' +
        'so it cannot know the collector refuses. spool with `persist: false` keeps nothing for a next load: beside spool at its defaults, in these rows and where ' +
        'a tab is closed 80 ms from a collector that takes everything (the page is gone before any answer can come), it shows what the stored copy buys and what it costs ' +
        '(the repeats of what arrived at close and went again from the copy).',
      '',
    );
    const cell = (row) =>
      row
        ? `${fmt(row.worst.atClose)} / ${fmt(row.worst.total)} (${fmt(row.best.total)}); ${fmt(row.repeats)} rep. (${fmt(row.repeatsAtClose ?? 0)} at close); +${fmt(row.delayMs)} ms; ${num(row.handlerMs)} ms${row.cutOff ? ` (cut: ${row.cutOff})` : ''}` +
          `${row.slowMs && row.heldMs !== null ? `; held ${fmt(row.heldMs)} ms` : ''}`
        : '—';
    const groups = [];
    for (const x of c.rows) {
      const slowMs = x.slowMs ?? 0;
      const refusing = Boolean(x.refusing);
      const g = groups.find((y) => y.engine === x.engine && y.way === x.way && y.n === x.n && y.latencyMs === x.latencyMs && y.warm === x.warm && y.stalled === x.stalled && y.slowMs === slowMs && y.refusing === refusing);
      if (g) g.byId[x.id] = x;
      else groups.push({ engine: x.engine, way: x.way, n: x.n, latencyMs: x.latencyMs, warm: x.warm, stalled: x.stalled, slowMs, refusing, byId: { [x.id]: x } });
    }
    const engines = [...new Set(groups.map((g) => g.engine))];
    for (const engine of engines) {
      const mine = groups.filter((g) => g.engine === engine);
      const ids = c.contenders.map((x) => x.id).filter((id) => mine.some((g) => g.byId[id]));
      out.push(`**${ENGINES[engine].label}** (${c.versions[engine]}): at close / with next load (best); repeats; next page's delay; longest lifecycle dispatch`, '');
      out.push(
        table(
          ['way of leaving', 'events held', 'latency', ...ids.map((id) => c.contenders.find((x) => x.id === id).label)],
          mine.map((g) => [wayLabel(g), fmt(g.n), `${g.latencyMs} ms`, ...ids.map((id) => cell(g.byId[id]))]),
        ),
        '',
      );
    }
    const spoolRows = c.rows.filter((x) => x.id === 'spool');
    out.push(
      "How spool's events arrived at close, in its worst run of each cell: the distinct events each path carried first. The collector tells the paths apart " +
        'as a PostHog capture endpoint could: `deferred`, a body without `sent_at` (a `fetchLater` request: spool cannot know when the browser sends it, ' +
        'so it stamps none); `beacon`, `Sec-Fetch-Mode: no-cors` (`sendBeacon` with a `text/plain` body); `fetch`, the rest (ordinary and keepalive `fetch`).',
      '',
    );
    out.push(
      table(
        ['browser', 'way of leaving', 'events held', 'latency', ...PATHS.map((p) => `by ${p}`), 'at close'],
        spoolRows.map((x) => [ENGINES[x.engine].label, wayLabel(x), fmt(x.n), `${x.latencyMs} ms`, ...PATHS.map((p) => fmt(x.worst.byPathAtClose[p])), fmt(x.worst.atClose)]),
      ),
      '',
    );

    // The goals figure 7 always had: Chromium, same-site navigation.
    const at = (g, id) => g.byId[id];
    const same = groups.filter((g) => g.engine === 'chromium' && g.way === 'nav' && !g.warm && !g.slowMs && !g.refusing && at(g, 'spool'));
    // The other SDKs in a cell (spool with `persist: false` is spool, not a rival).
    const rivals = (g) => Object.keys(g.byId).filter((id) => !id.startsWith('spool'));
    const behind = same.filter((g) => rivals(g).some((id) => at(g, id).worst.total > at(g, 'spool').worst.total));
    goals.push([
      `page close: spool delivers at least posthog-js (with and without gzip-js) in every cell, worst of ${runsOf(same.map((g) => at(g, 'spool')))}, next load counted`,
      behind.length === 0
        ? `${same.length} of ${same.length} cells`
        : `behind in ${behind.map((g) => `N=${fmt(g.n)} ${g.latencyMs} ms (${fmt(at(g, 'spool').worst.total)} vs ${fmt(Math.max(...rivals(g).map((id) => at(g, id).worst.total)))})`).join('; ')}`,
      behind.length === 0,
    ]);
    const small = same.filter((g) => g.n <= GOAL.closeFullUpTo);
    if (small.length) {
      const short = small.filter((g) => at(g, 'spool').worst.total < g.n);
      goals.push([
        `page close: every event delivered for N ≤ ${fmt(GOAL.closeFullUpTo)}, at close or from the next load (spool, worst of ${runsOf(small.map((g) => at(g, 'spool')))})`,
        small.map((g) => `${fmt(at(g, 'spool').worst.total)}/${fmt(g.n)} at ${g.latencyMs} ms`).join('; '),
        short.length === 0,
      ]);
    }

    // The goals of "Ready before the page goes away".
    const where = (g) =>
      `${ENGINES[g.engine].label} ${WAYS[g.way].label}${g.stalled ? ' (stalled)' : g.warm ? ' (answered first)' : ''}${g.slowMs ? ' (same-origin, slow)' : ''}${g.refusing ? ' (refusing)' : ''} N=${fmt(g.n)} ${g.latencyMs} ms`;
    const cold = groups.filter((g) => !g.warm && !g.slowMs && !g.refusing);
    // A navigation held by the page's requests: the collector on the page's origin, slow.
    const slow = groups.filter((g) => g.slowMs && at(g, 'spool') && rivals(g).length && at(g, 'spool').heldMs !== null);
    if (slow.length) {
      const over = (g) => at(g, 'spool').heldMs - Math.min(...rivals(g).map((id) => at(g, id).heldMs ?? Infinity));
      const worst = slow.reduce((a, g) => (over(g) > over(a) ? g : a));
      goals.push([
        `page close: with the collector on the page's origin answering in ${slow[0].slowMs} ms, \`beforeunload\` to \`pagehide\` within ${GOAL.closeHeldOverMs} ms of posthog-js's, Chromium and WebKit (spool, longest of ${runsOf(slow.map((g) => at(g, 'spool')))})`,
        `${slow.map((g) => `${where(g)}: ${fmt(at(g, 'spool').heldMs)} vs ${fmt(Math.min(...rivals(g).map((id) => at(g, id).heldMs)))} ms`).join('; ')}; most over: ${where(worst)}`,
        slow.every((g) => over(g) <= GOAL.closeHeldOverMs),
      ]);
    }
    const chromiumSmall = cold.filter((g) => g.engine === 'chromium' && g.n <= GOAL.closeFullUpTo && at(g, 'spool'));
    if (chromiumSmall.length) {
      const short = chromiumSmall.filter((g) => at(g, 'spool').worst.atClose < g.n);
      goals.push([
        `page close, Chromium: every event delivered at close for N ≤ ${fmt(GOAL.closeFullUpTo)}, same-site and cross-site navigation and tab closed (spool, worst of ${runsOf(chromiumSmall.map((g) => at(g, 'spool')))})`,
        short.length === 0 ? `${chromiumSmall.length} of ${chromiumSmall.length} cells` : `short in ${short.map((g) => `${where(g)} (${fmt(at(g, 'spool').worst.atClose)})`).join('; ')}`,
        short.length === 0,
      ]);
    }
    const others = cold.filter((g) => g.engine !== 'chromium' && at(g, 'spool'));
    const othersSmall = others.filter((g) => g.n <= GOAL.closeFullUpTo);
    if (othersSmall.length) {
      const short = othersSmall.filter((g) => at(g, 'spool').worst.total < g.n);
      goals.push([
        `page close, Firefox ESR and WebKit: every event delivered for N ≤ ${fmt(GOAL.closeFullUpTo)}, next load counted (spool, worst of ${runsOf(othersSmall.map((g) => at(g, 'spool')))})`,
        short.length === 0 ? `${othersSmall.length} of ${othersSmall.length} cells` : `short in ${short.map((g) => `${where(g)} (${fmt(at(g, 'spool').worst.total)})`).join('; ')}`,
        short.length === 0,
      ]);
    }
    if (others.length) {
      const lower = others.filter((g) => rivals(g).some((id) => at(g, id).worst.atClose > at(g, 'spool').worst.atClose));
      goals.push([
        'page close, Firefox ESR and WebKit: spool delivers at close at least what posthog-js does, in every cell (worst runs)',
        lower.length === 0
          ? `${others.length} of ${others.length} cells`
          : `behind in ${lower.map((g) => `${where(g)} (${fmt(at(g, 'spool').worst.atClose)} vs ${fmt(Math.max(...rivals(g).map((id) => at(g, id).worst.atClose)))})`).join('; ')}`,
        lower.length === 0,
      ]);
    }
    // A collector refusing as the page leaves, before any answer: nothing lost, the stored copy
    // delivering from the next load.
    const refused = groups.filter((g) => g.refusing && at(g, 'spool'));
    if (refused.length) {
      const short = refused.filter((g) => at(g, 'spool').worst.total < g.n);
      const others = (g) => Object.keys(g.byId).filter((id) => id !== 'spool').map((id) => `${c.contenders.find((x) => x.id === id).label} ${fmt(at(g, id).worst.total)}`).join(', ');
      goals.push([
        `page close: nothing lost when the collector refuses (503) as the page leaves, before any answer; next load counted (spool, worst of ${runsOf(refused.map((g) => at(g, 'spool')))})`,
        refused.map((g) => `${where(g)}: ${fmt(at(g, 'spool').worst.total)} of ${fmt(g.n)} (${others(g)})`).join('; '),
        short.length === 0,
      ]);
    }
    for (const contender of c.contenders) {
      const mine = groups.filter((g) => at(g, contender.id));
      if (!mine.length) continue;
      const over = mine.filter((g) => at(g, contender.id).repeats > GOAL.closeRepeats * g.n);
      const most = mine.reduce((a, g) => (at(g, contender.id).repeats / g.n > at(a, contender.id).repeats / a.n ? g : a));
      goals.push([
        `page close: repeats ≤ ${GOAL.closeRepeats * 100} % of N in every cell (${contender.label})`,
        over.length === 0
          ? `${mine.length} of ${mine.length} cells; at most ${pct(at(most, contender.id).repeats, most.n)} (${where(most)})`
          : `over in ${over.length} of ${mine.length} cells; most ${pct(at(most, contender.id).repeats, most.n)} (${where(most)})`,
        over.length === 0,
      ]);
    }
    const heldMost = Math.max(...groups.map((g) => g.n));
    // Held a while (behind a stalled collector) and captured in the page's last task, apart:
    // what a page holds for a while can be made ready before it goes; what it captures as it
    // goes cannot.
    for (const [kind, stalled] of [['held 2 s behind a stalled collector', true], ['captured in the task the page leaves in', false]]) {
      const full = groups.filter((g) => g.n === heldMost && Boolean(g.stalled) === stalled && at(g, 'spool'));
      if (!full.length) continue;
      const longest = full.reduce((a, g) => (at(g, 'spool').handlerMs > at(a, 'spool').handlerMs ? g : a));
      const cut = full.filter((g) => at(g, 'spool').cutOff);
      const ok = at(longest, 'spool').handlerMs <= GOAL.closeTaskMs && cut.length === 0;
      const perEngine = engines
        .map((e) => full.filter((g) => g.engine === e))
        .filter((gs) => gs.length)
        .map((gs) => `${ENGINES[gs[0].engine].label} ${num(Math.max(...gs.map((g) => at(g, 'spool').handlerMs)))} ms`)
        .join(', ');
      goals.push([
        `page close: the longest task at close (the contender's longest lifecycle dispatch) ≤ ${GOAL.closeTaskMs} ms with ${fmt(heldMost)} ${kind}, every browser and way (spool)`,
        `${perEngine}; longest ${where(longest)}${cut.length ? `; the page went during a listener in ${cut.map(where).join('; ')}` : ''}`,
        ok,
      ]);
    }
  }

  if (r.wireGzip) {
    const w = r.wireGzip;
    out.push(`## 8. Bytes on the wire with compression, ${w.n.toLocaleString('en-US')} events`, '');
    out.push(
      `As figure 3 (the same events, captured as fast as the loop goes, then delivered), but sent cross-origin to the decoding collector of figure 7, ` +
        "so gzip bodies are counted. posthog-js's gzip-js is how PostHog Cloud runs it: posthog-js 1.449 starts with `compression = \"gzip-js\"` unless " +
        '`disable_compression` is set, and the remote config PostHog\'s servers answer (`supportedCompression`) keeps it; the bench turns remote ' +
        'config off, so it sets `posthog.compression = "gzip-js"` as that answer would. ' +
        `The events' own JSON: ${w.eventJsonBytes.toLocaleString('en-US')} bytes. ${runs(w.runs)}.`,
      '',
    );
    out.push(
      table(
        ['contender', 'requests', 'events delivered', 'body bytes', 'header bytes / request', 'bytes / event on the wire', "wire ÷ events' JSON", "body only ÷ events' JSON", 'main thread µs / event, capture to delivery'],
        w.rows.map((x) => [x.label, spread(x.requests), spread(x.events), spread(x.bodyBytes), num(x.headerBytesPerRequest), num(x.wireBytes.median / w.n), spread(x.wireRatio), spread(x.bodyRatio), spread(x.mainThread)]),
      ),
      '',
    );
    const x = w.rows.find((row) => row.id === 'spool-gzip');
    if (x) {
      goals.push([
        `on the wire ≤ 0.25 × the events' JSON with compression (${x.label}, headers included)`,
        `${spread(x.wireRatio)} × (body only ${spread(x.bodyRatio)} ×)`,
        x.wireRatio.median <= GOAL.gzipWireRatio,
      ]);
    }
  }

  const goalLines = ['## Goals', '', table(['goal', 'measured', 'verdict'], goals.map(([g, m, ok]) => [g, m, ok === null ? 'n/a' : ok ? 'PASS' : 'FAIL'])), ''];
  out.splice(goalIndex, 0, ...goalLines);
  out.push('## How to reproduce', '', '```sh', 'make bench                   # builds pkg/ (release), runs every figure, writes BENCHMARKS.md', 'node bench/run.mjs --quick   # the same code on small counts (a few minutes), writes nothing', 'node bench/run.mjs --only 7,8 --out FILE   # page close and the compressed wire alone', '```', '');
  return out.join('\n');
}

/**
 * The default batch mode and linger interval, chosen by a rule stated in the report: fewest
 * requests at 100 events/s among the spool configurations whose p95 latency stays within
 * `LATENCY_BUDGET_MS` at every rate and that deliver everything; ties go to the lower p95 at
 * 1 event/s.
 */
const LATENCY_BUDGET_MS = 2000;

function recommendation(L) {
  const spoolIds = LATENCY_CONTENDERS.filter((c) => c.kind === 'spool').map((c) => c.id);
  const at = (id, p) => L.rows.find((x) => x.id === id && x.perSecond === p);
  const rates = [...new Set(L.rows.map((x) => x.perSecond))];
  const mid = rates.includes(100) ? 100 : rates[Math.floor(rates.length / 2)];
  const low = rates[0];
  const ok = spoolIds.filter((id) => rates.every((p) => at(id, p) && at(id, p).p95 <= LATENCY_BUDGET_MS && at(id, p).delivered === at(id, p).events));
  const ranked = [...ok].sort((a, b) => at(a, mid).requestsPer1000 - at(b, mid).requestsPer1000 || at(a, low).p95 - at(b, low).p95);
  const lines = ['### The default batch mode and interval', ''];
  lines.push(
    `Rule: among spool's configurations that deliver every event with a p95 latency within ${LATENCY_BUDGET_MS / 1000} s at every rate, ` +
      `the fewest requests per 1,000 events at ${mid} events/s (ties: the lower p95 at ${low} event/s).`,
  );
  if (ranked.length === 0) {
    lines.push('', 'No configuration meets the latency budget at every rate.');
    return lines;
  }
  const best = ranked[0];
  const label = LATENCY_CONTENDERS.find((c) => c.id === best).label;
  const cell = (id) =>
    rates.map((p) => `${p}/s: p95 ${num(at(id, p).p95)} ms, ${num(at(id, p).requestsPer1000)} req/1,000`).join('; ');
  lines.push('', `**Pick: ${label}.** ${cell(best)}.`, '');
  for (const id of spoolIds.filter((x) => x !== best)) {
    const c = LATENCY_CONTENDERS.find((x) => x.id === id);
    const why = !ok.includes(id)
      ? 'misses the latency budget or does not deliver everything'
      : `more requests at ${mid}/s (${num(at(id, mid).requestsPer1000)} vs ${num(at(best, mid).requestsPer1000)} per 1,000)`;
    lines.push(`- ${c.label}: ${why}. ${cell(id)}.`);
  }
  return lines;
}

// --- the environment -----------------------------------------------------------------------

function environment() {
  const sh = (cmd) => {
    try {
      return execSync(cmd, { cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim().split('\n')[0];
    } catch {
      return 'n/a';
    }
  };
  const pkgVersion = (name) => {
    try {
      return JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', name, 'package.json'), 'utf8')).version;
    } catch {
      return 'n/a';
    }
  };
  const cpus = os.cpus();
  const machine = `${cpus[0]?.model ?? 'unknown CPU'}, ${cpus.length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.type()} ${os.release()}`;
  const dirty = sh('git status --porcelain --untracked-files=no -- src Cargo.toml Cargo.lock') ? ' (src modified)' : '';
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    machine,
    versions: {
      command: '`make bench`',
      machine,
      'load average at start (1, 5, 15 min)': os.loadavg().map((x) => x.toFixed(2)).join(', '),
      'spool commit': `${sh('git rev-parse --short HEAD')}${dirty}`,
      rustc: sh('rustc --version'),
      'wasm-pack': sh('wasm-pack --version'),
      'wasm-bindgen': sh('wasm-bindgen --version'),
      'wasm-opt': sh(`${path.join(ROOT, 'node_modules/.bin/wasm-opt')} --version`),
      node: process.version,
      Chromium: 'set when launched',
      'playwright-core': pkgVersion('playwright-core'),
      'posthog-js': pkgVersion('posthog-js'),
      miniflare: pkgVersion('miniflare'),
      workerd: pkgVersion('workerd'),
      'page-close keys spool knows (pkg/spool.d.ts)': `persist: ${SUPPORTS.persist ? 'yes' : 'no'}, compression: ${SUPPORTS.compression ? 'yes' : 'no'}`,
      'edge middleware': hasWithTelemetry(ROOT) ? 'withTelemetry exported by pkg/edge.js' : 'not built (no pkg/edge.js exporting withTelemetry)',
    },
  };
}

main().catch((err) => {
  console.error(err?.stack ?? err);
  process.exit(1);
});
