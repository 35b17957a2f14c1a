//! Figures 1, 3, 4 and 5: the contenders in headless Chromium, each measurement in a fresh
//! browser context opened on bench/pages/bench.html, against one local collector.

import { percentile, rotate, summary } from './stats.mjs';

const PAGE = '/bench/pages/bench.html';

// spool's queue bounds raised so 100,000 events fit (defaults: 10,000 events, 5 MiB).
const ROOMY = { maxQueueEvents: 200_000, maxQueueBytes: 1 << 30 };

/** The contenders of figures 1 and 3, in the order the first run takes them. */
export const CAPTURE_CONTENDERS = [
  { id: 'floor', label: 'plain-JS floor', kind: 'floor' },
  { id: 'spool-linger', label: 'spool, linger', kind: 'spool', options: { ...ROOMY, batchMode: 'linger' } },
  { id: 'spool-auto', label: 'spool, auto', kind: 'spool', options: { ...ROOMY, batchMode: 'auto' } },
  { id: 'spool-off', label: 'spool, off', kind: 'spool', options: { ...ROOMY, batchMode: 'off' } },
  { id: 'posthog', label: 'posthog-js', kind: 'posthog' },
];

/** Figure 4's contenders: spool's batch modes (linger at three intervals), and posthog-js. */
export const LATENCY_CONTENDERS = [
  { id: 'linger-250', label: 'spool linger, flushIntervalMs 250', kind: 'spool', options: { ...ROOMY, batchMode: 'linger', flushIntervalMs: 250 } },
  { id: 'linger-1000', label: 'spool linger, flushIntervalMs 1000', kind: 'spool', options: { ...ROOMY, batchMode: 'linger', flushIntervalMs: 1000 } },
  { id: 'linger-3000', label: 'spool linger, flushIntervalMs 3000', kind: 'spool', options: { ...ROOMY, batchMode: 'linger', flushIntervalMs: 3000 } },
  { id: 'auto', label: 'spool auto', kind: 'spool', options: { ...ROOMY, batchMode: 'auto' } },
  { id: 'off', label: 'spool off', kind: 'spool', options: { ...ROOMY, batchMode: 'off' } },
  { id: 'posthog', label: 'posthog-js (its 3 s flush)', kind: 'posthog' },
];

/**
 * posthog-js with gzip-js, as PostHog Cloud runs it: posthog-js 1.449 starts with
 * `compression = "gzip-js"` unless `disable_compression` (posthog-core.js, `_init`), and the
 * remote config PostHog's servers answer (`supportedCompression: ["gzip", "gzip-js"]`) keeps it
 * (`_onRemoteConfig`). The bench turns remote config off (`advanced_disable_flags`), so the
 * contender passes `disable_compression: false` and this sets what the remote config would.
 * Bodies are then gzip (fflate, or CompressionStream where it exists), `text/plain`, no header.
 */
export async function enableGzipJs() {
  const { default: posthog } = await import('/node_modules/posthog-js/dist/module.js');
  posthog.compression = 'gzip-js';
}

/** posthog-js's request queue flushes every 3 s (RequestQueueConfig.flush_interval_ms). */
const POSTHOG_FLUSH_MS = 3000;

/**
 * Opens the bench page (served by `collector`) in a fresh context and sets up one contender,
 * sending to `endpoint` (default: the same collector's /batch/; posthog-js takes its origin).
 * A contender with `gzipJs` is posthog-js with gzip-js compression on (see enableGzipJs).
 */
export async function openContender(browser, collector, contender, { apiKey = contender.id, endpoint = collector.url + '/batch/' } = {}) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e?.stack ?? e)));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) errors.push(m.text());
  });
  await page.goto(collector.url + PAGE);
  await page.waitForFunction(() => window.benchReady === true);
  await page.evaluate((spec) => window.bench.setup(spec), {
    kind: contender.kind,
    apiKey,
    endpoint,
    options: contender.options ?? {},
  });
  if (contender.gzipJs) await page.evaluate(enableGzipJs);
  const cdp = await context.newCDPSession(page);
  return {
    page,
    context,
    cdp,
    errors,
    apiKey,
    close: () => context.close(),
  };
}

/**
 * Reads the collector's log incrementally (so no batch is copied twice) and keeps, per api key,
 * requests, body bytes, events and each event's latency from capture (its `timestamp`) to
 * arrival at the collector. Bodies are not kept.
 */
export class Tally {
  constructor(collector) {
    this.collector = collector;
    this.since = 0;
    this.byKey = new Map();
  }

  key(apiKey) {
    if (!this.byKey.has(apiKey)) {
      this.byKey.set(apiKey, { requests: 0, bytes: 0, events: 0, latencies: [], paths: new Set() });
    }
    return this.byKey.get(apiKey);
  }

  poll() {
    const { batches } = this.collector.log(this.since);
    for (const b of batches) {
      this.since = Math.max(this.since, b.seq);
      const apiKey = b.body?.api_key ?? (Array.isArray(b.body) ? b.body[0]?.properties?.token : undefined) ?? '?';
      const t = this.key(apiKey);
      t.requests++;
      t.bytes += b.bytes;
      t.paths.add(b.path);
      const events = Array.isArray(b.body?.batch) ? b.body.batch : Array.isArray(b.body) ? b.body : [];
      t.events += events.length;
      for (const e of events) {
        const at = Date.parse(e.timestamp);
        if (Number.isFinite(at)) t.latencies.push(b.receivedAt - at);
      }
    }
    return this;
  }

  get(apiKey) {
    return this.poll().key(apiKey);
  }

  /** Waits until `events` events for `apiKey` have arrived, or `timeoutMs` passes. */
  async waitFor(apiKey, events, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    while (this.get(apiKey).events < events && Date.now() < deadline) await sleep(25);
    return this.get(apiKey);
  }
}

/**
 * Figure 1: main-thread cost per capture over `n` captures, `runs` times, the contenders
 * alternating (run r starts with contender r). Returns per contender the µs/event of each run,
 * the longest 100-capture chunk and the long tasks (≥ 50 ms) seen, and per run the ratios to
 * the floor and to posthog-js measured in that run.
 */
export async function captureCost(browser, collector, { n, runs, chunk = 100, log }) {
  const results = Object.fromEntries(CAPTURE_CONTENDERS.map((c) => [c.id, { usPerEvent: [], maxChunkMs: [], longTasks: [] }]));
  for (let r = 0; r < runs; r++) {
    for (const c of rotate(CAPTURE_CONTENDERS, r)) {
      collector.control.reset();
      const h = await openContender(browser, collector, c);
      try {
        const res = await h.page.evaluate((a) => window.bench.captureLoop(a), { n, chunk });
        const lt = await h.page.evaluate(() => window.bench.longTasks());
        const us = (res.totalMs * 1000) / n;
        results[c.id].usPerEvent.push(us);
        results[c.id].maxChunkMs.push(res.maxChunkMs);
        results[c.id].longTasks.push(lt);
        log?.(`  run ${r + 1}/${runs} ${c.label}: ${us.toFixed(2)} µs/event, longest chunk ${res.maxChunkMs.toFixed(1)} ms`);
        if (h.errors.length) throw new Error(`${c.label}: page errors: ${h.errors.join('\n')}`);
      } finally {
        await h.close();
      }
    }
  }
  collector.control.reset();
  const ratios = {};
  for (const c of CAPTURE_CONTENDERS) {
    ratios[c.id] = {
      vsFloor: results[c.id].usPerEvent.map((us, r) => us / results.floor.usPerEvent[r]),
      posthogOver: results[c.id].usPerEvent.map((us, r) => results.posthog.usPerEvent[r] / us),
    };
  }
  return {
    n,
    runs,
    chunk,
    rows: CAPTURE_CONTENDERS.map((c) => ({
      ...c,
      us: summary(results[c.id].usPerEvent),
      maxChunk: summary(results[c.id].maxChunkMs),
      longTaskMax: Math.max(0, ...results[c.id].longTasks.flat()),
      vsFloor: summary(ratios[c.id].vsFloor),
      posthogOver: summary(ratios[c.id].posthogOver),
    })),
  };
}

/**
 * Figure 1, second half: the longest task each contender causes outside the benchmark's own
 * capture loop (its timers, its responses, its sends), from a Chromium trace of `n` captures
 * and their delivery. The loop's tasks are told apart by the `performance.mark` each starts with.
 */
export async function longestTasks(browser, collector, { n, offN = n, chunk = 100, log }) {
  const out = {};
  for (const c of CAPTURE_CONTENDERS) {
    collector.control.reset();
    const tally = new Tally(collector);
    const h = await openContender(browser, collector, c);
    // spool's `off` sends one request per event: seconds per thousand, traced.
    const count = c.id === 'spool-off' ? offN : n;
    try {
      await h.cdp.send('Tracing.start', {
        transferMode: 'ReturnAsStream',
        traceConfig: { includedCategories: ['toplevel', 'blink.user_timing'], recordMode: 'recordAsMuchAsPossible' },
      });
      await h.page.evaluate((a) => window.bench.captureLoop(a), { n: count, chunk, mark: true });
      if (c.kind === 'spool') await h.page.evaluate(() => window.bench.flush());
      if (c.kind === 'posthog') await tally.waitFor(h.apiKey, count, POSTHOG_FLUSH_MS + 30_000);
      const events = await stopTrace(h.cdp, (text) => text.includes('RunTask') || text.includes('bench-chunk'));
      out[c.id] = { ...longestOutsideLoop(events), events: count };
      log?.(`  ${c.label}: longest task outside the loop ${out[c.id].longestMs.toFixed(1)} ms, longest loop task ${out[c.id].longestLoopMs.toFixed(1)} ms`);
    } finally {
      await h.close();
    }
  }
  collector.control.reset();
  return { n, offN, chunk, byId: out };
}

/**
 * Ends a trace started with `Tracing.start` (ReturnAsStream) and returns the trace events whose
 * JSON text passes `keep`. The trace is read as a stream and split into events as it comes:
 * with thousands of requests it is larger than a string may be.
 */
async function stopTrace(cdp, keep) {
  const complete = new Promise((resolve) => cdp.once('Tracing.tracingComplete', resolve));
  await cdp.send('Tracing.end');
  const { stream } = await complete;
  const kept = [];
  let depth = 0;
  let inString = false;
  let escaped = false;
  let start = -1;
  let carry = '';
  for (;;) {
    const { data, eof, base64Encoded } = await cdp.send('IO.read', { handle: stream, size: 1 << 20 });
    const text = carry + (base64Encoded ? Buffer.from(data, 'base64').toString('utf8') : data);
    // Scanning resumes where the last chunk stopped: `carry` holds the unfinished event only.
    for (let i = carry.length; i < text.length; i++) {
      const ch = text[i];
      if (inString) {
        if (escaped) escaped = false;
        else if (ch === '\\') escaped = true;
        else if (ch === '"') inString = false;
      } else if (ch === '"') inString = true;
      else if (ch === '{' || ch === '[') {
        depth++;
        if (depth === 3 && ch === '{') start = i;
      } else if (ch === '}' || ch === ']') {
        if (depth === 3 && ch === '}' && start >= 0) {
          const event = text.slice(start, i + 1);
          if (keep(event)) kept.push(JSON.parse(event));
          start = -1;
        }
        depth--;
      }
    }
    carry = start >= 0 ? text.slice(start) : '';
    if (start >= 0) start = 0;
    if (eof) break;
  }
  await cdp.send('IO.close', { handle: stream });
  return kept;
}

function longestOutsideLoop(events) {
  const marks = events.filter((e) => e.name === 'bench-chunk');
  if (marks.length === 0) return { longestMs: NaN, longestLoopMs: NaN, tasks: 0 };
  const { pid, tid } = marks[0];
  const markTs = marks.map((m) => m.ts).sort((a, b) => a - b);
  const first = markTs[0];
  const tasks = events.filter(
    (e) => e.ph === 'X' && e.pid === pid && e.tid === tid && /RunTask$/.test(e.name) && e.dur > 0 && e.ts + e.dur >= first,
  );
  let longest = 0;
  let longestLoop = 0;
  let i = 0;
  for (const t of tasks.sort((a, b) => a.ts - b.ts)) {
    while (i < markTs.length && markTs[i] < t.ts) i++;
    const isLoop = i < markTs.length && markTs[i] <= t.ts + t.dur;
    if (isLoop) longestLoop = Math.max(longestLoop, t.dur);
    else longest = Math.max(longest, t.dur);
  }
  return { longestMs: longest / 1000, longestLoopMs: longestLoop / 1000, tasks: tasks.length };
}

/**
 * Figure 3: requests and bytes on the wire for `n` events captured as fast as the loop goes
 * (100 per task), and the main thread's whole-path cost (capture through delivery, from the
 * renderer's own task accounting). Bytes are request bodies as the collector received them,
 * plus request headers as Chromium sent them (its Network domain, in a separate short probe per
 * contender so the instrumentation does not weigh on the timed runs). The events' own JSON is
 * the floor's records for the same events: `{event, distinct_id, properties, timestamp, uuid}`,
 * the least a PostHog-format exporter can ship. spool's `off` mode sends one request per event
 * and takes seconds per thousand, so it runs on `n / offDivisor` events, scaled to `n`.
 */
export async function wire(browser, collector, { n, runs, offDivisor = 10, log, contenders: only = null, sink = collector }) {
  // The baseline: the same n events as JSON records.
  const floor = await openContender(browser, collector, CAPTURE_CONTENDERS[0]);
  await floor.page.evaluate((a) => window.bench.captureLoop(a), { n, chunk: 100 });
  const records = await floor.page.evaluate((k) => window.bench.floorRecords(k), n);
  await floor.close();
  const eventJsonBytes = records.reduce((s, r) => s + Buffer.byteLength(r), 0);

  // `sink` receives the batches (another origin when it is not `collector`): it must decode
  // what the contenders send (bench/close.mjs's startSink decodes gzip).
  const contenders = only ?? CAPTURE_CONTENDERS.filter((c) => c.kind !== 'floor');
  const endpoint = sink.url + '/batch/';
  const countFor = (c) => (c.id === 'spool-off' ? Math.ceil(n / offDivisor) : n);

  // Header bytes per request: constant per contender, so measured once on a few events.
  const headerBytes = {};
  for (const c of contenders) {
    collector.control.reset();
    sink.control.reset();
    const tally = new Tally(sink);
    const h = await openContender(browser, collector, c, { endpoint });
    try {
      const headers = tapRequestHeaders(h.cdp);
      await h.cdp.send('Network.enable');
      await h.page.evaluate((a) => window.bench.captureLoop(a), { n: 200, chunk: 100 });
      if (c.kind === 'spool') await h.page.evaluate(() => window.bench.flush());
      await tally.waitFor(h.apiKey, 200, POSTHOG_FLUSH_MS + 10_000);
      await sleep(100);
      const sent = headers.bytes();
      headerBytes[c.id] = sent.requests ? sent.bytes / sent.requests : NaN;
    } finally {
      await h.close();
    }
  }

  const results = Object.fromEntries(contenders.map((c) => [c.id, []]));
  for (let r = 0; r < runs; r++) {
    for (const c of rotate(contenders, r)) {
      collector.control.reset();
      sink.control.reset();
      const tally = new Tally(sink);
      const h = await openContender(browser, collector, c, { endpoint });
      const count = countFor(c);
      const scale = n / count;
      try {
        await h.cdp.send('Performance.enable');
        const before = metrics(await h.cdp.send('Performance.getMetrics'));
        await h.page.evaluate((a) => window.bench.captureLoop(a), { n: count, chunk: 100 });
        if (c.kind === 'spool') await h.page.evaluate(() => window.bench.flush());
        const got = await tally.waitFor(h.apiKey, count, c.kind === 'posthog' ? POSTHOG_FLUSH_MS + 60_000 : 60_000);
        const after = metrics(await h.cdp.send('Performance.getMetrics'));
        const row = {
          requests: got.requests * scale,
          events: got.events * scale,
          bodyBytes: got.bytes * scale,
          headerBytes: got.requests * scale * headerBytes[c.id],
          mainThreadUsPerEvent: ((after.TaskDuration - before.TaskDuration) * 1e6) / count,
        };
        results[c.id].push(row);
        log?.(`  run ${r + 1}/${runs} ${c.label}: ${got.requests} requests, ${got.bytes} body bytes, ${got.events}/${count} events, main thread ${row.mainThreadUsPerEvent.toFixed(1)} µs/event`);
      } finally {
        await h.close();
      }
    }
  }
  collector.control.reset();
  sink.control.reset();
  return {
    n,
    runs,
    eventJsonBytes,
    rows: contenders.map((c) => {
      const rs = results[c.id];
      return {
        ...c,
        measuredOn: countFor(c),
        requests: summary(rs.map((x) => x.requests)),
        events: summary(rs.map((x) => x.events)),
        bodyBytes: summary(rs.map((x) => x.bodyBytes)),
        wireBytes: summary(rs.map((x) => x.bodyBytes + x.headerBytes)),
        headerBytesPerRequest: headerBytes[c.id],
        bodyRatio: summary(rs.map((x) => x.bodyBytes / eventJsonBytes)),
        wireRatio: summary(rs.map((x) => (x.bodyBytes + x.headerBytes) / eventJsonBytes)),
        mainThread: summary(rs.map((x) => x.mainThreadUsPerEvent)),
        maxBatchEvents: c.kind === 'spool' ? (c.options?.batchMode === 'off' ? 1 : 100) : null,
      };
    }),
  };
}

/** Counts the request headers Chromium sends to the collector's batch paths (HTTP/1.1 text). */
function tapRequestHeaders(cdp) {
  const posts = new Map();
  const extra = new Map();
  cdp.on('Network.requestWillBeSent', (e) => {
    if (e.request.method === 'POST') posts.set(e.requestId, new URL(e.request.url).pathname + new URL(e.request.url).search);
  });
  cdp.on('Network.requestWillBeSentExtraInfo', (e) => extra.set(e.requestId, e.headers));
  return {
    bytes() {
      let bytes = 0;
      let requests = 0;
      for (const [id, target] of posts) {
        const h = extra.get(id);
        if (!h) continue;
        requests++;
        bytes += `POST ${target} HTTP/1.1\r\n`.length + 2;
        for (const [k, v] of Object.entries(h)) bytes += Buffer.byteLength(`${k}: ${v}\r\n`);
      }
      // Requests whose headers were not reported count as the average of those that were.
      const missing = posts.size - requests;
      if (requests && missing > 0) bytes += (bytes / requests) * missing;
      return { bytes, requests: posts.size };
    },
  };
}

function metrics({ metrics }) {
  return Object.fromEntries(metrics.map((m) => [m.name, m.value]));
}

/**
 * Figure 4: delivery latency (capture to collector) and requests per 1,000 events at each rate,
 * with the collector answering after `rttMs` (a stand-in for a real network's round trip,
 * which is what `auto` batches on). Up to 100 events/s all contenders run at once, each in its
 * own page (they are mostly idle); faster, one at a time. Nothing calls flush(): events go when
 * the contender's own policy sends them. Events still undelivered `waitMs` after the last
 * capture count as never delivered (an infinite latency).
 */
export async function latency(browser, collector, { rates, rttMs, waitMs, log, contenders = LATENCY_CONTENDERS }) {
  const out = [];
  collector.control.reset();
  for (const { perSecond, seconds } of rates) {
    const groups = perSecond <= 100 ? [contenders] : contenders.map((c) => [c]);
    for (const group of groups) {
      collector.control.reset();
      collector.control.plan([], { status: 200, delayMs: rttMs });
      const tally = new Tally(collector);
      const handles = [];
      try {
        for (const c of group) handles.push(await openContender(browser, collector, c, { apiKey: `${c.id}@${perSecond}` }));
        const runs = await Promise.all(handles.map((h) => h.page.evaluate((a) => window.bench.rate(a), { perSecond, seconds })));
        await Promise.all(
          handles.map((h, i) => tally.waitFor(h.apiKey, runs[i].events, waitMs + (group[i].kind === 'posthog' ? POSTHOG_FLUSH_MS : 0))),
        );
        for (const [i, c] of group.entries()) {
          const t = tally.get(handles[i].apiKey);
          const events = runs[i].events;
          const lat = [...t.latencies, ...Array(Math.max(0, events - t.latencies.length)).fill(Infinity)];
          const row = {
            id: c.id,
            label: c.label,
            perSecond,
            events,
            achievedPerSecond: (events / runs[i].elapsedMs) * 1000,
            delivered: t.events,
            requests: t.requests,
            requestsPer1000: (t.requests / events) * 1000,
            p50: percentile(lat, 50),
            p95: percentile(lat, 95),
          };
          out.push(row);
          log?.(`  ${perSecond}/s ${c.label}: p50 ${row.p50} ms, p95 ${row.p95} ms, ${row.requests} requests for ${events} events (${t.events} delivered)`);
        }
      } finally {
        await Promise.all(handles.map((h) => h.close()));
      }
    }
  }
  collector.control.reset();
  return { rates, rttMs, waitMs, rows: out };
}

/**
 * Figure 5: memory per queued event with `n` events held. The collector stalls every request,
 * so everything captured stays held (queued or in flight). spool: growth of its wasm linear
 * memory (`init()`'s exports.memory); every contender: growth of the JS heap after a forced GC.
 */
export async function memory(browser, collector, { n, posthogN, log }) {
  const contenders = [
    CAPTURE_CONTENDERS[0],
    { ...CAPTURE_CONTENDERS[1], options: { ...CAPTURE_CONTENDERS[1].options, maxInFlight: 1 } },
    CAPTURE_CONTENDERS[4],
  ];
  const rows = [];
  for (const c of contenders) {
    collector.control.reset();
    collector.control.plan([], { status: 200, delayMs: 120_000 });
    const h = await openContender(browser, collector, c);
    const count = c.kind === 'posthog' ? posthogN : n;
    try {
      await h.page.evaluate((a) => window.bench.captureLoop(a), { n: 1, chunk: 1, start: -1 });
      const heap0 = await jsHeap(h.cdp);
      const mem0 = await h.page.evaluate(() => window.bench.memory());
      await h.page.evaluate((a) => window.bench.captureLoop(a), { n: count, chunk: 1000 });
      const heap1 = await jsHeap(h.cdp);
      const mem1 = await h.page.evaluate(() => window.bench.memory());
      const stats = await h.page.evaluate(() => window.bench.stats());
      const row = {
        ...c,
        events: count,
        held: stats ? stats.queued + stats.inFlight : count,
        wasmBefore: mem0.wasmBytes,
        wasmAfter: mem1.wasmBytes,
        wasmPerEvent: mem0.wasmBytes === null ? null : (mem1.wasmBytes - mem0.wasmBytes) / count,
        jsHeapPerEvent: (heap1 - heap0) / count,
        dropped: stats?.dropped?.total ?? 0,
      };
      rows.push(row);
      log?.(`  ${c.label}: ${count} events, wasm ${row.wasmBefore} → ${row.wasmAfter} bytes, JS heap +${(heap1 - heap0) | 0} bytes`);
    } finally {
      await h.close();
    }
  }
  collector.control.reset();
  return { n, posthogN, rows };
}

async function jsHeap(cdp) {
  await cdp.send('HeapProfiler.collectGarbage');
  const { usedSize } = await cdp.send('Runtime.getHeapUsage');
  return usedSize;
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}
