//! The demo's next page: where the leave experiment (www/app.js) goes, here or on the other
//! origin. It ends the collector's stall and waits until what the leaving page sent is in ("at
//! close"); then, on the leaving page's own origin, it is the next load: a spool exporter of the
//! same endpoint takes the stored copy and sends it (and posthog-js is loaded again, as a next
//! page would), and what arrives then is "from the next load". On the other origin it goes
//! back to the leaving page's origin for that, carrying the at-close mark in its address.
//!
//! The address says what the run was: `run` (the property every event of it carries), `n`,
//! `since` (the collector's last seq before it), `from` (the leaving page's origin), `posthog`
//! (1 if posthog-js ran beside spool), `left` (when the page started leaving, ms since the
//! epoch) and, once known, `closed` (the last seq at close). `window.spoolNext` exposes the
//! tally for the headless scenario (tools/demo.mjs).

import { otherOrigin } from './posthog.js';
import { StoragePanel, readStoredCopies } from './stored.js';
import { PATHS, SENDERS, deliveryPath, runEvents, senderOf, tallyRun } from '/tools/leave.mjs';

const POLL_MS = 250;
// What the leaving page sent is in once no request of the run has come for this long, and at
// least MIN_WAIT_MS after this page started (bench/close.mjs waits the same).
const QUIET_MS = 1500;
const MIN_WAIT_MS = 2000;
const MAX_WAIT_MS = 30_000;
// How long the next load waits for spool's events still missing: a copy whose page did not
// mark it gone is taken once its writer has been silent PERSIST_LIVE_MS (10 s,
// src/engine/page/persist.rs), and storage is read again a second after that.
const NEXT_LOAD_PATIENCE_MS = 13_000;
// Where this page leaves the run's numbers for the demo page (www/app.js reads it).
const LAST_RUN_KEY = 'spool-demo:last-leave';
// The demo page's endpoint and key: the stored copy belongs to the endpoint.
const API_KEY = 'phc_demo';

const number = new Intl.NumberFormat('en-US');
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const experiment = {
  run: params.get('run'),
  n: Number(params.get('n')),
  since: Number(params.get('since')) || 0,
  from: params.get('from') ?? location.origin,
  posthog: params.get('posthog') === '1',
  left: Number(params.get('left')),
};

const next = {
  /** 'close' (waiting for what the page sent as it went), 'next' (the next load), 'done'. */
  phase: 'close',
  /** The last seq at close, once known. */
  closedAt: params.has('closed') ? Number(params.get('closed')) : null,
  /** Events and bytes in storage as this load began, before its exporter took them. */
  stored: null,
  exporter: null,
  tally: null,
  done: false,
  failed: null,
};
window.spoolNext = next;

/** The run's log entries so far (every batch after `since`). */
const batches = [];
let lastSeq = experiment.since;
/** When the last request of the run reached the collector (its clock; ms since the epoch). */
let lastArrival = 0;
/** When the last poll that answered was asked: the log is known up to then. */
let knownUntil = 0;

async function main() {
  if (!experiment.run || !experiment.n) throw new Error('no run in the address: start one from the demo page');
  const answering = next.closedAt === null ? healthy() : null;
  $('summary').textContent = `The page at ${new URL(experiment.from).host} went away holding ` +
    `${number.format(experiment.n)} events${experiment.posthog ? ' in spool and in posthog-js' : ''} ` +
    'behind a stalled collector.';
  new StoragePanel(
    { events: $('stored-events'), bytes: $('stored-bytes'), expires: $('stored-expires'), note: $('stored-note') },
    () => next.exporter,
  );
  await poll();
  if (next.closedAt === null) {
    setStatus('Collector answering again; waiting for what the page sent as it went…', 'warn');
    await answering;
    await quiet(MIN_WAIT_MS);
    next.closedAt = lastSeq;
  }
  if (experiment.from !== location.origin) {
    setStatus(`At close: done. The next load is on ${new URL(experiment.from).host}: going there…`, 'warn');
    const back = new URL(location.pathname, experiment.from);
    back.search = new URLSearchParams({ ...Object.fromEntries(params), closed: next.closedAt }).toString();
    location.href = back.href;
    return;
  }
  await nextLoad();
  next.phase = 'done';
  render();
  saveLastRun();
  next.done = true;
  setStatus('Done: every number is the collector\'s.', 'ok');
}

/**
 * The next load of the leaving page's origin: what storage holds is noted, then a spool
 * exporter of the same endpoint takes it and sends it; posthog-js is loaded again too. Ends
 * once spool's events are all in (or its patience is out) and the collector is quiet.
 */
async function nextLoad() {
  next.phase = 'next';
  const copies = await readStoredCopies();
  next.stored = {
    events: copies.reduce((sum, c) => sum + c.events, 0),
    chars: copies.reduce((sum, c) => sum + c.chars, 0),
  };
  setStatus('The next load: spool takes its stored copy and sends it…', 'warn');
  const spool = await import('/pkg/spool.js');
  await spool.default();
  next.exporter = new spool.Exporter({ endpoint: `${location.origin}/batch/`, apiKey: API_KEY });
  if (experiment.posthog) await import('./posthog.js').then((m) => m.startPosthog());
  const start = Date.now();
  while (Date.now() - start < NEXT_LOAD_PATIENCE_MS && (next.tally?.spool.distinct ?? 0) < experiment.n) await sleep(POLL_MS);
  await quiet(0);
}

/**
 * The collector answers again: the stall ends, and the answers it held go out. Asked under
 * both of its names at once, as text/plain (no preflight): the leaving page's requests may
 * hold every connection to one of them until their answers go.
 */
function healthy() {
  const ask = (origin) => fetch(`${origin}/control`, {
    method: 'POST',
    headers: { 'Content-Type': 'text/plain' },
    body: JSON.stringify({ plan: [], default: { status: 200 } }),
  }).then((res) => {
    if (!res.ok) throw new Error(`the collector refused to answer again: HTTP ${res.status}`);
  });
  return Promise.any([ask(location.origin), ask(otherOrigin())]);
}

/**
 * Resolves once the log, as last read, shows no request of the run for QUIET_MS, at least
 * `minMs` from now. Judged by the collector's clock and the time of the read, not by when the
 * page saw the log: a read can take a while (posthog-js's bodies are large).
 */
async function quiet(minMs) {
  const start = Date.now();
  for (;;) {
    await sleep(POLL_MS);
    if (Date.now() - start > MAX_WAIT_MS) return;
    if (knownUntil - start >= minMs && knownUntil - Math.max(lastArrival, start) >= QUIET_MS) return;
  }
}

/** Reads the log's new batches, keeps the run's, and reads again once that is done. */
async function poll() {
  const asked = Date.now();
  try {
    const res = await fetch(`/control/log?since=${lastSeq}`, { cache: 'no-store' });
    const log = await res.json();
    for (const b of log.batches) {
      lastSeq = Math.max(lastSeq, b.seq);
      if (runEvents(b, experiment.run).length === 0) continue;
      batches.push(b);
      lastArrival = Math.max(lastArrival, b.receivedAt);
    }
    knownUntil = asked;
  } catch {
    // The collector went away: the numbers stay as they were.
  }
  render();
  setTimeout(poll, POLL_MS);
}

function render() {
  next.tally = tallyRun(batches, { run: experiment.run, leftAt: experiment.left, closedAt: next.closedAt });
  renderResults(next.tally);
  renderRequests();
}

// ---- The tally ------------------------------------------------------------------------------

/**
 * The results table's rows: a label, then a value per sender from its tally and name (null:
 * not known for that sender).
 */
const ROWS = [
  ['Captured', () => experiment.n],
  ...PATHS.map((path) => [`at close, ${path}`, (t) => t.atClose[path], 'sub']),
  ['At close', (t) => atClose(t), 'total'],
  // posthog-js keeps no events for the next load; what else it stores is not read here.
  ['Stored as the next load began', (t, sender) => (sender === 'spool' ? next.stored?.events ?? null : null)],
  ['From the next load', (t) => t.nextLoad, 'total'],
  ['Missing', (t) => experiment.n - t.distinct, 'total'],
  ['Repeats', (t) => t.repeats],
  ['Requests', (t) => t.requests],
  ['JSON bytes', (t) => t.jsonBytes],
  ['Wire bytes', (t) => t.wireBytes],
];

function atClose(t) {
  return PATHS.reduce((sum, p) => sum + t.atClose[p], 0);
}

function renderResults(tally) {
  const rows = ROWS.map(([label, value, kind]) => {
    const tr = document.createElement('tr');
    if (kind === 'total') tr.className = 'total';
    tr.append(cell(label, `label${kind === 'sub' ? ' sub' : ''}`));
    for (const sender of SENDERS) {
      const shown = sender === 'spool' || experiment.posthog ? value(tally[sender], sender) : null;
      tr.append(cell(shown === null ? '—' : number.format(shown), 'num'));
    }
    return tr;
  });
  $('result-rows').replaceChildren(...rows);
}

function renderRequests() {
  const count = batches.length;
  $('request-count').textContent = `${number.format(count)} ${count === 1 ? 'request' : 'requests'}`;
  if (!count) return;
  const rows = batches.map((b) => {
    const tr = document.createElement('tr');
    const nextLoad = next.closedAt !== null && b.seq > next.closedAt;
    const arrived = b.receivedAt - experiment.left;
    tr.append(
      cell(String(b.seq)),
      cell(senderOf(b.body)),
      cell(nextLoad ? 'next load' : deliveryPath(b, experiment.left)),
      cell(b.status === null ? 'no answer' : String(b.status)),
      cell(number.format(runEvents(b, experiment.run).length), 'num'),
      cell(number.format(b.jsonBytes ?? b.bytes), 'num'),
      cell(number.format(b.bytes), 'num'),
      cell(b.gzip ? `${((b.jsonBytes ?? b.bytes) / Math.max(1, b.bytes)).toFixed(1)}×` : 'plain', 'num'),
      cell(`${arrived < 0 ? '−' : '+'}${number.format(Math.abs(arrived))} ms`, 'num'),
    );
    return tr;
  });
  $('request-rows').replaceChildren(...rows);
}

/** The run's numbers for the demo page's "Last run" line. */
function saveLastRun() {
  const brief = (t) => ({ distinct: t.distinct, atClose: atClose(t), nextLoad: t.nextLoad, repeats: t.repeats });
  // Only a run that went to the other origin comes back here with its at-close mark.
  const to = params.has('closed') ? 'the other origin' : 'another page';
  try {
    localStorage.setItem(LAST_RUN_KEY, JSON.stringify({
      n: experiment.n,
      to,
      spool: brief(next.tally.spool),
      posthog: experiment.posthog ? brief(next.tally['posthog-js']) : null,
    }));
  } catch {}
}

function cell(text, className) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function setStatus(text, state) {
  const el = $('status');
  el.textContent = text;
  el.dataset.state = state;
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

main().catch((err) => {
  console.error(err);
  next.failed = String(err?.message ?? err);
  setStatus(`Could not finish: ${next.failed}`, 'bad');
});
