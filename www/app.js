//! The demo page: one spool `Exporter` sending to the collector that serves this page, its
//! stats drawn live, the collector's failure modes one click away, what the exporter keeps in
//! storage for the next load, and an experiment that leaves the page while events are held
//! (its results are on the next page, www/next.html).
//!
//! The collector (tools/collector.mjs) serves the repository, so the page is at `/www/`, the
//! package at `/pkg/spool.js`, batches go to `/batch/` and the failure modes are set through
//! `POST /control`. `window.spoolDemo` exposes the exporter and what the page captured, for
//! the headless scenario (tools/demo.mjs) and the browser test.

import { otherOrigin } from './posthog.js';
import { StoragePanel } from './stored.js';

const BURST_SIZE = 1000;
// Four samples a second: fast enough to watch a burst drain, cheap enough to never matter.
const SAMPLE_MS = 250;
// The chart shows the last minute; a younger page fills the width with its whole life (at
// least 15 s), so the first clicks are not squeezed against the right edge.
const CHART_WINDOW_MS = 60_000;
const CHART_MIN_SPAN_MS = 15_000;
const LOG_POLL_MS = 500;
// The batch table has room for this many rows; its height is fixed so nothing below it moves.
const BATCH_ROWS = 6;
// The leave experiment holds its events this long behind the stalled collector before it goes:
// long enough for spool to pack the waiting batches (it packs a batch unanswered a second).
const HOLD_MS = 2000;
// The longest the collector stalls an answer if no next page comes to end the stall: below the
// exporter's requestTimeoutMs (10 s here), so the stall alone makes no retries, and short
// enough that a navigation whose host has every connection held waits no longer.
const STALL_MAX_MS = 5000;
// Where the next page leaves the last run's numbers for this page (www/next.js writes it).
const LAST_RUN_KEY = 'spool-demo:last-leave';

// Lively settings for a demo: the engine's defaults, but retries come back within half a
// second so a 503 visibly recovers. Any of them can be overridden from the address bar.
const DEFAULT_CONFIG = {
  endpoint: `${location.origin}/batch/`,
  apiKey: 'phc_demo',
  batchMode: 'linger',
  flushIntervalMs: 1000,
  maxBatchEvents: 500,
  maxInFlight: 4,
  initialBackoffMs: 500,
  maxBackoffMs: 5000,
  requestTimeoutMs: 10_000,
};

// What the collector answers in each mode, as `POST /control`'s `default`.
const MODES = {
  ok: { answer: { status: 200 }, summary: 'answering 200', state: 'ok' },
  slow: { answer: { status: 200, delayMs: 2000 }, summary: 'slow: 200 after 2 s', state: 'warn' },
  503: { answer: { status: 503 }, summary: 'unavailable: 503', state: 'bad' },
  429: { answer: { status: 429, retryAfter: '2' }, summary: 'rate limiting: 429, Retry-After: 2', state: 'bad' },
  // Set by the leave experiment only (no radio): every answer held until the next page.
  stall: { answer: { status: 200, hold: true, delayMs: STALL_MAX_MS }, summary: 'stalled: every answer held', state: 'warn' },
};

const number = new Intl.NumberFormat('en-US');
const $ = (id) => document.getElementById(id);

const demo = {
  ready: false,
  exporter: null,
  config: null,
  mode: 'ok',
  /** When the collector's mode changed: [{ t, mode }], for the chart's bands. */
  modeChanges: [],
  /** uuids returned by `capture`, in order. */
  captured: [],
  /** capture() calls that threw (too large; also counted as dropped by the exporter). */
  refused: 0,
  /** capture() calls that returned no uuid: the queue was full (counted as dropped). */
  queueFull: 0,
  lastFlush: null,
  /** Why the page could not start, if it could not. */
  failed: null,
  burstCount: 0,
  clickCount: 0,
  /** The leave experiment under way: { run, n, spool: [uuids], posthog: [uuids] }. */
  leaving: null,
  storage: null,
};
window.spoolDemo = demo;

async function main() {
  const config = configFromAddress();
  demo.config = config;
  showConfig(config);

  let spool;
  try {
    spool = await import('/pkg/spool.js');
  } catch (err) {
    throw new Error('the package is not built (pkg/spool.js is missing): run `make demo` from the repository');
  }
  await spool.default();
  demo.exporter = new spool.Exporter(config);

  await setMode('ok');
  wireControls();
  chart = new Chart($('chart'));
  setInterval(sample, SAMPLE_MS);
  sample();
  pollLog();
  demo.storage = new StoragePanel(
    { events: $('stored-events'), bytes: $('stored-bytes'), expires: $('stored-expires'), note: $('stored-note') },
    () => demo.exporter,
  );
  $('other-origin').textContent = `the other origin, ${new URL(otherOrigin()).host}`;
  showLastRun();

  for (const id of ['capture-one', 'burst', 'flush', 'leave']) $(id).disabled = false;
  demo.ready = true;
  document.documentElement.dataset.ready = 'true';
}

// Options the page does not set but the address may, e.g. `?maxQueueEvents=500` to watch
// events dropped as queueFull, with how each is read.
const OTHER_OPTIONS = {
  distinctId: String,
  maxBatchBytes: Number,
  maxQueueEvents: Number,
  maxQueueBytes: Number,
  maxAttempts: Number,
  flushOnPageHide: (v) => v !== 'false',
  debug: (v) => v !== 'false',
};

function configFromAddress() {
  const config = { ...DEFAULT_CONFIG };
  const params = new URLSearchParams(location.search);
  for (const [key, fallback] of Object.entries(DEFAULT_CONFIG)) {
    if (key === 'endpoint' || !params.has(key)) continue;
    config[key] = typeof fallback === 'number' ? Number(params.get(key)) : params.get(key);
  }
  for (const [key, read] of Object.entries(OTHER_OPTIONS)) {
    if (params.has(key)) config[key] = read(params.get(key));
  }
  return config;
}

function showConfig(config) {
  const rows = Object.entries(config).map(([key, value]) => {
    const row = document.createElement('div');
    const dt = document.createElement('dt');
    const dd = document.createElement('dd');
    dt.textContent = key;
    dd.textContent = typeof value === 'string' ? value : JSON.stringify(value);
    // A narrow column breaks a URL after its origin rather than inside the port.
    if (key === 'endpoint') dd.replaceChildren(location.origin, document.createElement('wbr'), value.slice(location.origin.length));
    row.append(dt, dd);
    return row;
  });
  $('config').replaceChildren(...rows);
}

function wireControls() {
  $('capture-one').addEventListener('click', () => {
    demo.clickCount++;
    const uuid = capture('demo_click', { n: demo.clickCount });
    if (uuid) say(`Captured demo_click #${demo.clickCount} (${uuid.slice(0, 13)}…).`);
  });

  $('burst').addEventListener('click', () => {
    const burst = ++demo.burstCount;
    const start = performance.now();
    const full = demo.queueFull;
    const refused = demo.refused;
    for (let i = 0; i < BURST_SIZE; i++) capture('burst_event', { burst, i });
    const ms = performance.now() - start;
    // A sample at once: the queue may drain before the next tick, and the chart should show it.
    sample();
    const lost = [];
    if (demo.queueFull > full) lost.push(`${number.format(demo.queueFull - full)} dropped, queue full`);
    if (demo.refused > refused) lost.push(`${number.format(demo.refused - refused)} refused`);
    say(`Captured a burst of ${number.format(BURST_SIZE)} events in ${ms.toFixed(1)} ms` +
      (lost.length ? ` (${lost.join(', ')}).` : '.'));
  });

  $('flush').addEventListener('click', async () => {
    say('Flushing: waiting for every event captured so far to be settled…');
    const start = performance.now();
    // What this flush waits for: every event captured before it (the headless scenario
    // checks that it resolved only once they were all delivered).
    const covers = demo.captured.length;
    try {
      const report = await demo.exporter.flush();
      const ms = Math.round(performance.now() - start);
      demo.lastFlush = { ...report, ms, covers, at: Date.now() };
      say(`Flushed in ${number.format(ms)} ms: ${number.format(report.delivered)} delivered, ` +
        `${number.format(droppedTotal(report.dropped))} dropped.`);
    } catch (err) {
      demo.lastFlush = { error: String(err?.message ?? err) };
      say(`Flush failed: ${err?.message ?? err}`);
    }
  });

  $('leave').addEventListener('click', () => {
    leave().catch((err) => {
      say(`The experiment failed: ${err?.message ?? err}`);
      setMode('ok');
      $('leave').disabled = false;
    });
  });

  for (const radio of document.querySelectorAll('input[name="mode"]')) {
    radio.addEventListener('change', () => {
      if (radio.checked) setMode(radio.value);
    });
  }
}

function capture(name, properties) {
  try {
    const uuid = demo.exporter.capture(name, properties);
    if (uuid === undefined) demo.queueFull++;
    else demo.captured.push(uuid);
    return uuid;
  } catch (err) {
    demo.refused++;
    say(`capture refused: ${err?.message ?? err}`);
    return null;
  }
}

async function setMode(mode) {
  const { answer } = MODES[mode];
  const previous = demo.mode;
  try {
    const res = await fetch('/control', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ plan: [], default: answer }),
    });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    demo.mode = mode;
    demo.modeChanges.push({ t: Date.now(), mode });
  } catch (err) {
    say(`Could not change the collector's mode: ${err?.message ?? err}`);
    document.querySelector(`input[name="mode"][value="${previous}"]`).checked = true;
  }
  showStatus();
}

function showStatus() {
  const { summary, state } = MODES[demo.mode];
  setStatus(`Collector at ${location.host}: ${summary}`, state);
}

function setStatus(text, state) {
  const el = $('status');
  el.textContent = text;
  el.dataset.state = state;
}

function say(text) {
  $('last-action').textContent = text;
}

/** Every capture() call: delivered, dropped or still held. */
function capturedCount() {
  return demo.captured.length + demo.queueFull + demo.refused;
}
demo.capturedCount = capturedCount;

function droppedTotal(dropped) {
  if (typeof dropped === 'number') return dropped;
  return dropped?.total ?? 0;
}

// ---- Leave this page ----------------------------------------------------------------------

/**
 * The experiment: posthog-js loaded in a frame (if asked for), the collector stalled, `n`
 * events captured by each, held `HOLD_MS`, then the page goes to the next page (www/next.html)
 * here or on the other origin, with what that page needs to tell this run's arrivals apart in
 * its address.
 */
async function leave() {
  $('leave').disabled = true;
  const n = Math.max(1, Math.min(10_000, Math.round(Number($('leave-n').value)) || 1000));
  const withPosthog = $('leave-posthog').checked;
  const toOrigin = $('leave-to').value === 'origin';
  let frame = null;
  if (withPosthog) {
    say('Loading posthog-js beside spool…');
    frame = await posthogFrame();
  }
  const run = `run${Date.now().toString(36)}`;
  const since = await latestSeq();
  await setMode('stall');
  const spool = [];
  for (let i = 0; i < n; i++) spool.push(capture('leave_event', { run, i }));
  const posthog = frame ? frame.capture(n, run) : [];
  demo.leaving = { run, n, spool, posthog };
  sample();
  const target = new URL('/www/next.html', toOrigin ? otherOrigin() : location.origin);
  for (let left = HOLD_MS; left > 0; left -= 500) {
    say(`Captured ${number.format(n)} events; the collector stalls. Leaving for ${target.host} in ${left / 1000} s…`);
    await new Promise((r) => setTimeout(r, 500));
  }
  target.search = new URLSearchParams({
    run, n, since, from: location.origin, posthog: withPosthog ? '1' : '0', left: Date.now(),
  }).toString();
  location.href = target.href;
}

/** A frame of this origin running posthog-js (www/posthog.html), once it is ready. */
async function posthogFrame() {
  const frame = document.createElement('iframe');
  frame.src = 'posthog.html';
  frame.hidden = true;
  frame.title = 'posthog-js';
  document.body.append(frame);
  for (let i = 0; i < 200 && !frame.contentWindow?.contender; i++) await new Promise((r) => setTimeout(r, 50));
  if (!frame.contentWindow?.contender) throw new Error('posthog-js did not load');
  return frame.contentWindow.contender;
}

/** The collector's latest batch seq: the next page reads the log from there. */
async function latestSeq() {
  const res = await fetch(`/control/log?since=${lastSeq}`, { cache: 'no-store' });
  const log = await res.json();
  return Math.max(lastSeq, ...log.batches.map((b) => b.seq));
}

/** The last run's numbers, as the next page left them. */
function showLastRun() {
  let last = null;
  try {
    last = JSON.parse(localStorage.getItem(LAST_RUN_KEY));
  } catch {}
  if (!last) return;
  const line = (name, t) => `${name} ${number.format(t.atClose)} at close` +
    (t.nextLoad ? ` + ${number.format(t.nextLoad)} next load` : '') +
    (t.distinct < last.n ? `, ${number.format(last.n - t.distinct)} missing` : '') +
    `, ${number.format(t.repeats)} ${t.repeats === 1 ? 'repeat' : 'repeats'}`;
  $('leave-last').textContent = `Last run, ${number.format(last.n)} to ${last.to}: ` + [line('spool', last.spool)]
    .concat(last.posthog ? [line('posthog-js', last.posthog)] : []).join('; ') + '.';
}

// ---- Live stats and the chart -------------------------------------------------------------

let chart;

function sample() {
  const s = demo.exporter.stats();
  const dropped = s.dropped ?? {};
  setText('stat-captured', number.format(capturedCount()));
  setText('stat-queued', number.format(s.queued));
  setText('stat-in-flight', number.format(s.inFlight));
  setText('stat-delivered', number.format(s.delivered));
  setText('stat-retried', number.format(s.retried));
  setText('stat-dropped', number.format(droppedTotal(dropped)));
  for (const reason of ['queueFull', 'tooLarge', 'rejected', 'attemptsExhausted', 'shutdown']) {
    setText(`drop-${reason}`, number.format(dropped[reason] ?? 0));
  }
  setText('stat-last-error', s.lastError ?? 'none');
  setText('legend-queued', number.format(s.queued));
  setText('legend-delivered', number.format(s.delivered));
  chart.push(Date.now(), s.queued, s.delivered);
  chart.draw(Date.now());
}

// Writes only on change, so screen readers and the layout see no churn at 4 Hz.
function setText(id, text) {
  const el = $(id);
  if (el.textContent !== text) el.textContent = text;
}

/**
 * A two-line strip chart of queued and delivered events on a canvas, with the times the
 * collector was failing shaded behind them.
 */
class Chart {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    this.samples = [];
    const css = getComputedStyle(document.documentElement);
    this.colors = {
      queued: css.getPropertyValue('--queued').trim() || '#c2410c',
      delivered: css.getPropertyValue('--delivered').trim() || '#1d4ed8',
      grid: css.getPropertyValue('--grid').trim() || '#e5e7eb',
      label: css.getPropertyValue('--muted').trim() || '#6b7280',
      warn: css.getPropertyValue('--warn').trim() || '#b45309',
      bad: css.getPropertyValue('--bad').trim() || '#b91c1c',
    };
    new ResizeObserver(() => this.resize()).observe(canvas.parentElement);
    this.resize();
  }

  resize() {
    const box = this.canvas.parentElement.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    this.width = Math.max(1, Math.floor(box.width));
    this.height = Math.max(1, Math.floor(box.height));
    this.canvas.width = this.width * dpr;
    this.canvas.height = this.height * dpr;
    this.ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    if (this.samples.length) this.draw(this.samples.at(-1).t);
  }

  push(t, queued, delivered) {
    this.samples.push({ t, queued, delivered });
    // One sample older than the window keeps the lines running to the left edge.
    while (this.samples.length > 2 && this.samples[1].t < t - CHART_WINDOW_MS) this.samples.shift();
    while (demo.modeChanges.length > 1 && demo.modeChanges[1].t < t - CHART_WINDOW_MS) demo.modeChanges.shift();
  }

  draw(now) {
    const { ctx, width, height, colors } = this;
    const pad = { left: 44, right: 10, top: 16, bottom: 22 };
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const first = this.samples[0]?.t ?? now;
    const span = Math.min(CHART_WINDOW_MS, Math.max(CHART_MIN_SPAN_MS, now - first));
    const start = now - span;
    const peak = Math.max(10, ...this.samples.map((s) => Math.max(s.queued, s.delivered)));
    const top = niceCeiling(peak);
    const x = (t) => pad.left + ((t - start) / span) * plotW;
    const y = (v) => pad.top + plotH - (v / top) * plotH;

    ctx.clearRect(0, 0, width, height);
    ctx.font = '11px system-ui, -apple-system, "Segoe UI", sans-serif';
    ctx.lineWidth = 1;

    ctx.save();
    ctx.beginPath();
    ctx.rect(pad.left, 0, plotW, height);
    ctx.clip();
    this.bands(x, start, now, pad.top, plotH);
    ctx.restore();

    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (let i = 0; i <= 4; i++) {
      const v = (top / 4) * i;
      const py = Math.round(y(v)) + 0.5;
      ctx.strokeStyle = colors.grid;
      ctx.beginPath();
      ctx.moveTo(pad.left, py);
      ctx.lineTo(width - pad.right, py);
      ctx.stroke();
      ctx.fillStyle = colors.label;
      ctx.fillText(compact(v), pad.left - 6, py);
    }
    ctx.textBaseline = 'top';
    const step = [5, 10, 15].find((s) => span / 1000 / s <= 4) ?? 15;
    for (let s = 0; s <= span / 1000 + 0.001; s += step) {
      const px = x(now - s * 1000);
      ctx.textAlign = s === 0 ? 'right' : 'center';
      if (px - pad.left < 14) ctx.textAlign = 'left';
      ctx.fillText(s === 0 ? 'now' : `−${s} s`, px, height - pad.bottom + 6);
    }

    ctx.save();
    ctx.beginPath();
    ctx.rect(pad.left, 0, plotW, height);
    ctx.clip();
    this.line('queued', x, y, colors.queued, true, pad.top + plotH);
    this.line('delivered', x, y, colors.delivered, false);
    ctx.restore();
  }

  // Shades each stretch of time the collector spent in a failure mode, labelled with it.
  bands(x, start, now, top, plotH) {
    const { ctx, colors } = this;
    const changes = demo.modeChanges;
    changes.forEach((change, i) => {
      if (change.mode === 'ok') return;
      const end = changes[i + 1]?.t ?? now;
      if (end < start) return;
      const x0 = x(change.t);
      const x1 = x(end);
      const color = ['slow', '429', 'stall'].includes(change.mode) ? colors.warn : colors.bad;
      ctx.globalAlpha = 0.1;
      ctx.fillStyle = color;
      ctx.fillRect(x0, top, x1 - x0, plotH);
      ctx.globalAlpha = 1;
      ctx.fillStyle = color;
      ctx.textAlign = 'left';
      ctx.textBaseline = 'bottom';
      ctx.fillText(change.mode, x0 + 3, top - 2);
    });
  }

  line(key, x, y, color, fill, baseline) {
    const { ctx, samples } = this;
    if (samples.length < 2) return;
    ctx.beginPath();
    samples.forEach((s, i) => (i ? ctx.lineTo(x(s.t), y(s[key])) : ctx.moveTo(x(s.t), y(s[key]))));
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.lineJoin = 'round';
    ctx.stroke();
    if (fill) {
      ctx.lineTo(x(samples.at(-1).t), baseline);
      ctx.lineTo(x(samples[0].t), baseline);
      ctx.closePath();
      ctx.globalAlpha = 0.12;
      ctx.fillStyle = color;
      ctx.fill();
      ctx.globalAlpha = 1;
    }
  }
}

// The smallest round number at or above `v` whose quarters (the grid lines) are round too.
function niceCeiling(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.2, 1.6, 2, 2.4, 3, 4, 6, 8]) if (m * p >= v) return m * p;
  return 10 * p;
}

function compact(v) {
  if (v >= 1000) return `${+(v / 1000).toFixed(1)}k`;
  return String(+v.toFixed(1));
}

// ---- What the collector received ------------------------------------------------------------

const recent = [];
let lastSeq = 0;
let received = 0;

async function pollLog() {
  try {
    const res = await fetch(`/control/log?since=${lastSeq}`, { cache: 'no-store' });
    const log = await res.json();
    if (log.batches.length) {
      for (const b of log.batches) {
        lastSeq = Math.max(lastSeq, b.seq);
        received++;
        recent.unshift(b);
      }
      recent.length = Math.min(recent.length, BATCH_ROWS);
      renderBatches();
    }
    setText('batch-count', `${number.format(received)} ${received === 1 ? 'request' : 'requests'}, ` +
      `${number.format(log.preflights)} ${log.preflights === 1 ? 'preflight' : 'preflights'}`);
  } catch {
    // The collector went away (Ctrl-C); the stats keep updating, the table stays as it was.
  }
  setTimeout(pollLog, LOG_POLL_MS);
}

function renderBatches() {
  const rows = recent.map((b) => {
    const tr = document.createElement('tr');
    const answer = b.status === null ? 'no answer' : String(b.status);
    const kind = b.status === null || b.status >= 500 ? 'bad' : b.status === 429 ? 'warn' : b.status < 300 ? 'ok' : 'bad';
    tr.append(
      cell(`${b.seq}`),
      cell(answer, `answer ${kind}`),
      cell(number.format(b.events), 'num'),
      cell(number.format(b.jsonBytes ?? b.bytes), 'num'),
      cell(number.format(b.bytes), 'num'),
      cell(ratio(b), 'num'),
      sentAtCell(b.sentAt),
      cell(new Date(b.receivedAt).toLocaleTimeString('en-GB', { hour12: false }) +
        `.${String(b.receivedAt % 1000).padStart(3, '0')}`, 'mono wide'),
    );
    return tr;
  });
  $('batch-rows').replaceChildren(...rows);
}

/** How many times smaller the body went than its JSON: `6.1×`, or `plain`. */
function ratio(b) {
  if (!b.gzip) return 'plain';
  return `${((b.jsonBytes ?? b.bytes) / Math.max(1, b.bytes)).toFixed(1)}×`;
}

// The date part folds away on a phone; the time is what differs between rows.
function sentAtCell(sentAt) {
  const td = cell('', 'mono');
  const split = typeof sentAt === 'string' ? sentAt.indexOf('T') + 1 : 0;
  if (!split) {
    td.textContent = sentAt ?? '—';
    return td;
  }
  const date = document.createElement('span');
  date.className = 'date';
  date.textContent = sentAt.slice(0, split);
  td.append(date, sentAt.slice(split));
  td.title = sentAt;
  return td;
}

function cell(text, className) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

// Last, so every constant above is initialised before it runs.
main().catch((err) => {
  console.error(err);
  demo.failed = String(err?.message ?? err);
  setStatus(`Could not start: ${demo.failed}`, 'bad');
});
