//! `make demo`: serves the demo page (www/) from the local collector, or drives it in headless
//! Chromium through a scripted scenario and reports what happened to every event.
//!
//!   node tools/demo.mjs [--port N]          serve until Ctrl-C (port: --port, DEMO_PORT, 8000)
//!   node tools/demo.mjs --headless          run the scenario, print a report, exit 1 if a check
//!                                           fails (also when DEMO_HEADLESS=1)
//!     --screenshot PATH                     save the page as PNG after the scenario (1280×800)
//!   --root DIR                              serve DIR instead of the repository
//!
//! The scenario first runs the page's "Leave this page" experiment twice (1,000 events to
//! another page of the demo, then 10,000 to the other origin, each with posthog-js beside
//! spool, after one event delivered so that the collector has answered): the collector stalls,
//! the page goes, and the next page (www/next.html) counts what arrived at close, by path, and
//! from the next load's stored copy. The driver checks those numbers against the collector's
//! own log: every event spool captured reached the collector, the page's repeats are the
//! collector's, and what the storage panel saw stored is what the next load took in.
//!
//! Then, on a fresh load of the demo page, it clicks the page's own buttons: one event, a burst
//! of 1,000, the collector rate-limiting with `429 Retry-After: 2` (and a flush asked for
//! meanwhile), a few 503s, then a last flush. It checks, from the collector's own log, that the
//! burst arrived, that no request reached the collector while a Retry-After was running, and
//! that every captured event was delivered exactly once or counted as dropped: lost =
//! captured − delivered − dropped must be 0.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startCollector } from './collector.mjs';
import { PATHS, SENDERS, eventsOf, senderOf } from './leave.mjs';

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
const DEFAULT_PORT = 8000;
const BURST_SIZE = 1000;
// What the page's "Rate limited" mode answers: `Retry-After: 2`.
const RETRY_AFTER_MS = 2000;
// Date.now() in Node and in Chromium read the same clock, but each rounds to the millisecond.
const CLOCK_SLACK_MS = 2;
// Generous: the slowest step (two Retry-After rounds) takes about 5 s.
const STEP_TIMEOUT_MS = 20_000;
// A leave run: capturing and holding, the next page's quiet wait, and the next load's
// patience for a copy not marked gone (13 s) take about 40 s with 10,000 events.
const LEAVE_TIMEOUT_MS = 120_000;
const SCENARIO_TIMEOUT_MS = 420_000;
/** The leave experiment's runs: where the page goes (www/app.js's `leave-to`) and how many events. */
const LEAVE_RUNS = [
  { to: 'page', label: 'another page of the demo', n: 1000 },
  { to: 'origin', label: 'the other origin', n: 10_000 },
];
const VIEWPORT = { width: 1280, height: 800 };

const args = parseArgs(process.argv.slice(2));
const root = path.resolve(args.root ?? REPO_ROOT);

if (!fs.existsSync(path.join(root, 'pkg', 'spool.js'))) {
  console.error(`spool demo: ${path.join(root, 'pkg', 'spool.js')} is missing; build it first (make build)`);
  process.exit(1);
}

if (args.headless || ['1', 'true', 'yes'].includes(process.env.DEMO_HEADLESS ?? '')) {
  process.exitCode = await runScenario({ root, port: args.port ?? 0, screenshot: args.screenshot });
} else {
  await serve({ root, port: args.port ?? (Number(process.env.DEMO_PORT) || DEFAULT_PORT) });
}

async function serve({ root, port }) {
  let collector;
  try {
    collector = await startCollector({ port, host: '127.0.0.1', root });
  } catch (err) {
    if (err.code !== 'EADDRINUSE') throw err;
    console.log(`spool demo: port ${port} is taken, using a free one`);
    collector = await startCollector({ port: 0, host: '127.0.0.1', root });
  }
  console.log(`spool demo: open ${collector.url}/www/`);
  console.log('  (the collector answers there too; Ctrl-C stops it)');
  const stop = () => collector.close().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

async function runScenario({ root, port, screenshot }) {
  const { launchBrowser, waitFor } = await import('../tests/e2e/harness.mjs');
  const collector = await startCollector({ port, host: '127.0.0.1', root });
  const browser = await launchBrowser();
  const watchdog = setTimeout(() => {
    console.error(`spool demo: the scenario did not finish within ${SCENARIO_TIMEOUT_MS / 1000} s`);
    process.exit(1);
  }, SCENARIO_TIMEOUT_MS);
  watchdog.unref();

  const pageErrors = [];
  const checks = [];
  const check = (ok, what, detail = '') => checks.push({ ok: Boolean(ok), what, detail });
  const started = Date.now();
  const progress = (text) => console.log(`  ${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s  ${text}`);

  try {
    // Twice the pixels for a screenshot, so it stays sharp in a README on a high-DPI screen.
    const context = await browser.newContext({ viewport: VIEWPORT, deviceScaleFactor: screenshot ? 2 : 1 });
    const page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(String(e?.stack ?? e)));
    console.log(`spool demo: headless scenario against ${collector.url}/www/`);
    const open = async () => {
      await page.goto(`${collector.url}/www/`);
      const start = await waitFor(() => page.evaluate(() => window.spoolDemo?.ready || window.spoolDemo?.failed), {
        timeoutMs: STEP_TIMEOUT_MS,
        message: 'the page to start the exporter',
      });
      if (start !== true) throw new Error(`the page could not start: ${start}`);
    };

    const leaveRuns = [];
    for (const run of LEAVE_RUNS) {
      await open();
      const result = await leaveRun(page, collector, run, waitFor);
      leaveRuns.push(result);
      progress(`left for ${run.label} holding ${run.n.toLocaleString('en-US')} events: ${leaveSummary(result.tally.spool)}`);
      checkLeaveRun(check, result);
    }

    // The scenario runs on a fresh load; the leave runs' events are left out of its accounting.
    await open();
    const seqAtStart = collector.log().batches.at(-1)?.seq ?? 0;

    // Where every card is, to check at the end that live numbers never moved the layout.
    const layout = () => page.evaluate(() => [...document.querySelectorAll('.masthead, .card')]
      .map((el) => { const r = el.getBoundingClientRect(); return `${el.className} ${r.x},${r.y} ${r.width}×${r.height}`; }));
    const layoutAtStart = await layout();
    const stats = () => page.evaluate(() => window.spoolDemo.exporter.stats());
    const captured = () => page.evaluate(() => window.spoolDemo.capturedCount());
    const lastSeq = () => collector.log().batches.at(-1)?.seq ?? 0;
    const answersSince = (seq, status) => collector.log().batches.filter((b) => b.seq > seq && b.status === status);
    const button = (name) => page.getByRole('button', { name, exact: true });
    const setMode = async (name, mode) => {
      await page.getByRole('radio', { name }).check();
      await waitFor(() => page.evaluate((m) => window.spoolDemo.mode === m, mode), { message: `mode ${mode}` });
    };
    const settled = async (what) => {
      const want = await captured();
      await waitFor(async () => {
        const s = await stats();
        return s.delivered + s.dropped.total === want && s.queued === 0 && s.inFlight === 0;
      }, { timeoutMs: STEP_TIMEOUT_MS, message: what });
    };

    // 1. One event, sent when the linger timer fires.
    await button('Capture one event').click();
    await settled('the first event to be delivered');
    progress('one event captured and delivered');

    // 2. A burst of 1,000: full batches go at once.
    const burstStart = Date.now();
    const seqBeforeBurst = lastSeq();
    await button('Burst 1,000').click();
    await settled('the burst to be delivered');
    const burstMs = Date.now() - burstStart;
    const burstUuids = await page.evaluate((n) => window.spoolDemo.captured.slice(-n), BURST_SIZE);
    const burstRequests = collector.log().batches.filter((b) => b.seq > seqBeforeBurst).length;
    const delivered = accepted(collector.log());
    const burstOnce = burstUuids.filter((u) => delivered.get(u) === 1).length;
    check(burstOnce === BURST_SIZE, 'the burst of 1,000 is delivered, each event once',
      `${burstOnce} of ${BURST_SIZE} burst events accepted exactly once`);
    const shown = await waitFor(async () => {
      const [text, s] = await Promise.all([page.locator('#stat-delivered').textContent(), stats()]);
      return text === s.delivered.toLocaleString('en-US') && text;
    }, { message: 'the page to show the delivered count' }).catch(() => null);
    check(shown === '1,001', 'the page shows 1,001 delivered', `page reads ${shown}`);
    progress(`burst of ${BURST_SIZE.toLocaleString('en-US')} delivered in ${burstMs} ms (${burstRequests} requests)`);

    // 3. Rate limited: every request is answered 429 with Retry-After: 2. A flush asked for
    //    meanwhile must wait for the Retry-After too.
    const seqBefore429 = lastSeq();
    await setMode('Rate limited', '429');
    for (let i = 0; i < 5; i++) await button('Capture one event').click();
    await waitFor(() => answersSince(seqBefore429, 429).length >= 1, { timeoutMs: STEP_TIMEOUT_MS, message: 'a 429' });
    progress('collector answered 429 (Retry-After: 2); flushing while it runs');
    await page.evaluate(() => { window.spoolDemo.lastFlush = null; });
    await button('Flush').click();
    await waitFor(() => answersSince(seqBefore429, 429).length >= 2, { timeoutMs: STEP_TIMEOUT_MS, message: 'a second 429' });
    await setMode('Healthy', 'ok');
    progress('a second 429; collector healthy again');
    const flushReport = await waitFor(() => page.evaluate(() => window.spoolDemo.lastFlush), {
      timeoutMs: STEP_TIMEOUT_MS,
      message: 'the flush to resolve',
    });
    await settled('the rate-limited events to be delivered');
    progress(`flush resolved after ${flushReport.ms} ms`);

    // 4. Unavailable: 503s are retried with backoff.
    const seqBefore503 = lastSeq();
    await setMode('Unavailable', '503');
    for (let i = 0; i < 3; i++) await button('Capture one event').click();
    await waitFor(() => answersSince(seqBefore503, 503).length >= 2, { timeoutMs: STEP_TIMEOUT_MS, message: 'two 503s' });
    await setMode('Healthy', 'ok');
    await settled('the events retried after 503 to be delivered');
    progress('two 503s, then delivered on retry');

    // 5. A last flush with a few fresh events.
    for (let i = 0; i < 3; i++) await button('Capture one event').click();
    await page.evaluate(() => { window.spoolDemo.lastFlush = null; });
    await button('Flush').click();
    await waitFor(() => page.evaluate(() => window.spoolDemo.lastFlush), { message: 'the last flush' });
    await settled('everything to be settled');
    progress('final flush done');

    // The accounting, from the page's stats and the collector's log.
    const log = { ...collector.log() };
    log.batches = log.batches.filter((b) => b.seq > seqAtStart);
    const final = await stats();
    const uuids = await page.evaluate(() => window.spoolDemo.captured);
    const total = await captured();
    const counts = accepted(log);
    const once = uuids.filter((u) => counts.get(u) === 1).length;
    const duplicated = [...counts.values()].filter((n) => n > 1).length;
    const strangers = [...counts.keys()].filter((u) => !uuids.includes(u)).length;
    const lost = total - final.delivered - final.dropped.total;

    const rateLimits = log.batches.filter((b) => b.status === 429);
    let soonest = Infinity;
    let early = 0;
    for (const limit of rateLimits) {
      const gateEnds = limit.answeredAt + RETRY_AFTER_MS;
      const after = log.batches.filter((b) => b.receivedAt > limit.answeredAt);
      early += after.filter((b) => b.receivedAt < gateEnds - CLOCK_SLACK_MS).length;
      if (after.length) soonest = Math.min(soonest, Math.min(...after.map((b) => b.receivedAt)) - limit.answeredAt);
    }
    check(rateLimits.length >= 2 && early === 0, 'no request reached the collector before a Retry-After ended',
      `${rateLimits.length} answers 429; ${early} requests too early; soonest next request ${soonest} ms after`);
    // The flush asked for during the Retry-After covered the rate-limited events: it must not
    // have resolved before the collector acknowledged the last of them.
    const covered = uuids.slice(0, flushReport.covers ?? 0);
    const ackedAt = new Map();
    for (const b of log.batches) {
      if (b.accepted) for (const e of b.body?.batch ?? []) if (!ackedAt.has(e.uuid)) ackedAt.set(e.uuid, b.answeredAt);
    }
    const lastAck = Math.max(...covered.map((u) => ackedAt.get(u) ?? Infinity));
    check(!flushReport.error && covered.length > 0 && lastAck <= flushReport.at + CLOCK_SLACK_MS,
      'a flush during Retry-After resolved only once its events were delivered',
      flushReport.error ?? `flush covered ${covered.length} events; resolved at ${flushReport.at}, last acknowledged at ${lastAck}`);
    check(final.retried >= 3, 'the 429s and 503s were retried', `${final.retried} retries`);
    check(once === uuids.length && duplicated === 0 && strangers === 0,
      'every captured event reached the collector exactly once',
      `${once} of ${uuids.length} once, ${duplicated} duplicated, ${strangers} unknown`);
    check(lost === 0 && final.delivered === total, 'no event lost', `lost = ${lost}`);
    const pageDelivered = await waitFor(async () => {
      const text = await page.locator('#stat-delivered').textContent();
      return text === final.delivered.toLocaleString('en-US') && text;
    }, { message: 'the page to show the final count' }).catch(() => null);
    check(pageDelivered, 'the page shows the final delivered count', `page reads ${pageDelivered}`);
    const layoutAtEnd = await layout();
    const moved = layoutAtEnd.filter((box, i) => box !== layoutAtStart[i]);
    check(moved.length === 0, 'no card moved or resized while the numbers changed',
      moved.map((box) => `${layoutAtStart[layoutAtEnd.indexOf(box)]} → ${box}`).join('\n'));
    check(pageErrors.length === 0, 'the page threw no error', pageErrors.join('\n'));

    if (screenshot) {
      // Let the chart and the batch table catch up with the last requests.
      await page.waitForTimeout(1200);
      fs.mkdirSync(path.dirname(path.resolve(screenshot)), { recursive: true });
      await page.screenshot({ path: screenshot });
      progress(`screenshot saved to ${screenshot}`);
    }

    printReport({ total, final, log, lost, burstMs, burstRequests, rateLimits, soonest });
    printLeaveRuns(leaveRuns);
  } catch (err) {
    check(false, 'the scenario ran to the end', String(err?.message ?? err) +
      (pageErrors.length ? `\npage errors:\n${pageErrors.join('\n')}` : ''));
  } finally {
    clearTimeout(watchdog);
    await browser.close();
    await collector.close();
  }

  console.log('checks:');
  for (const c of checks) {
    console.log(`  ${c.ok ? 'ok  ' : 'FAIL'}  ${c.what}${c.ok ? '' : `\n        ${c.detail.replaceAll('\n', '\n        ')}`}`);
  }
  const failed = checks.filter((c) => !c.ok).length;
  console.log(`demo: ${checks.length - failed} passed, ${failed} failed`);
  return failed ? 1 : 0;
}

function printReport({ total, final, log, lost, burstMs, burstRequests, rateLimits, soonest }) {
  const n = (v) => v.toLocaleString('en-US');
  const d = final.dropped;
  const byStatus = new Map();
  for (const b of log.batches) byStatus.set(b.status ?? 'none', (byStatus.get(b.status ?? 'none') ?? 0) + 1);
  const statuses = [...byStatus].sort((a, b) => b[1] - a[1]).map(([s, c]) => `${c} × ${s}`).join(', ');
  const rows = [
    ['events captured', n(total)],
    ['delivered', n(final.delivered)],
    ['dropped', `${n(d.total)} (queueFull ${d.queueFull}, tooLarge ${d.tooLarge}, rejected ${d.rejected}, ` +
      `attemptsExhausted ${d.attemptsExhausted}, shutdown ${d.shutdown})`],
    ['lost', `${n(lost)} (captured − delivered − dropped)`],
    ['requests', `${n(final.requests ?? log.batches.length)} (collector received ${statuses})`],
    ['retries', n(final.retried)],
    ['burst', `${n(BURST_SIZE)} events delivered in ${n(burstMs)} ms, ${burstRequests} requests`],
    ['Retry-After: 2', rateLimits.length
      ? `honoured: after ${rateLimits.length} answers 429, the soonest next request came ${n(soonest)} ms later`
      : 'no 429 was answered'],
    ['preflights', n(log.preflights)],
  ];
  console.log('report:');
  for (const [k, v] of rows) console.log(`  ${k.padEnd(16)} ${v}`);
}

/** uuid → how many times the collector accepted it, leave runs' events left out. */
function accepted(log) {
  const counts = new Map();
  for (const b of log.batches) {
    if (!b.accepted) continue;
    for (const e of b.body?.batch ?? []) {
      if (e.properties?.run === undefined) counts.set(e.uuid, (counts.get(e.uuid) ?? 0) + 1);
    }
  }
  return counts;
}

/**
 * One run of the page's "Leave this page" experiment, from the demo page (loaded, exporter
 * running): one event delivered first (so the collector has answered), then `n` events and
 * the page goes `to`; resolves with what the next page counted once it is done, what the page
 * captured, and the collector's own count.
 */
async function leaveRun(page, collector, { to, label, n }, waitFor) {
  await page.getByRole('button', { name: 'Capture one event', exact: true }).click();
  await waitFor(() => page.evaluate(() => window.spoolDemo.exporter.stats().delivered >= 1), {
    timeoutMs: STEP_TIMEOUT_MS,
    message: 'the first event to be delivered',
  });
  await page.locator('#leave-n').fill(String(n));
  await page.locator('#leave-to').selectOption(to);
  await page.getByRole('button', { name: 'Capture and leave', exact: true }).click();
  const captured = await waitFor(() => page.evaluate(() => window.spoolDemo?.leaving), {
    timeoutMs: STEP_TIMEOUT_MS,
    message: 'the page to capture the run',
  });
  // The page goes, and on the other origin comes back: an evaluate may meet no document.
  const next = await waitFor(() => page.evaluate(() => {
    const s = window.spoolNext;
    if (!s?.done && !s?.failed) return null;
    return { failed: s.failed, tally: s.tally, stored: s.stored, restored: s.exporter?.stats().restored ?? null };
  }).catch(() => null), { timeoutMs: LEAVE_TIMEOUT_MS, intervalMs: 200, message: `the next page to count the run to ${label}` });
  if (next.failed) throw new Error(`the next page failed: ${next.failed}`);
  return { to, label, n, captured, ...next, collector: collectorCount(collector.log(), captured.run) };
}

/** The collector's own count of a leave run, per sender: arrivals and each uuid it holds. */
function collectorCount(log, run) {
  const count = Object.fromEntries(SENDERS.map((s) => [s, { arrivals: 0, uuids: new Set() }]));
  for (const b of log.batches) {
    for (const e of eventsOf(b.body)) {
      if (e?.properties?.run !== run) continue;
      const c = count[senderOf(b.body)];
      c.arrivals++;
      c.uuids.add(e.uuid);
    }
  }
  return count;
}

/** The checks of a leave run: the next page's numbers against the collector's. */
function checkLeaveRun(check, { label, n, captured, tally, stored, restored, collector }) {
  const where = `(${n.toLocaleString('en-US')} events, to ${label})`;
  const spool = collector.spool;
  const missing = captured.spool.filter((u) => !spool.uuids.has(u)).length;
  check(captured.spool.length === n && missing === 0 && tally.spool.distinct === n,
    `every event spool captured reached the collector, at close or from the next load ${where}`,
    `${missing} of ${captured.spool.length} captured missing at the collector; the page counts ${tally.spool.distinct}`);
  for (const sender of SENDERS) {
    const c = collector[sender];
    const repeats = c.arrivals - c.uuids.size;
    check(tally[sender].repeats === repeats && tally[sender].distinct === c.uuids.size,
      `the page's repeats and distinct events for ${sender} are the collector's ${where}`,
      `page: ${tally[sender].repeats} repeats, ${tally[sender].distinct} distinct; ` +
      `collector: ${repeats} repeats, ${c.uuids.size} distinct`);
  }
  check(stored?.events === restored,
    `what the storage panel saw stored is what the next load took in ${where}`,
    `panel: ${stored?.events} events stored; exporter: ${restored} restored`);
}

/** One sender's numbers of a leave run, in a line. */
function leaveSummary(t) {
  const n = (v) => v.toLocaleString('en-US');
  const atClose = PATHS.reduce((sum, p) => sum + t.atClose[p], 0);
  return `${n(atClose)} at close (${PATHS.map((p) => `${p} ${n(t.atClose[p])}`).join(', ')}), ` +
    `${n(t.nextLoad)} from the next load, ${n(t.repeats)} repeats, ${n(t.wireBytes)} bytes on the wire ` +
    `for ${n(t.jsonBytes)} of JSON`;
}

function printLeaveRuns(runs) {
  console.log('leave this page (collector stalled, events held 2 s, then the page goes):');
  for (const run of runs) {
    console.log(`  to ${run.label}, ${run.n.toLocaleString('en-US')} events captured by each; ` +
      `${run.stored.events.toLocaleString('en-US')} spool events stored, ${run.restored.toLocaleString('en-US')} taken by the next load`);
    for (const sender of SENDERS) console.log(`    ${sender.padEnd(10)} ${leaveSummary(run.tally[sender])}`);
  }
}

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--headless') out.headless = true;
    else if (a === '--screenshot') out.screenshot = value();
    else if (a === '--port') out.port = Number(value());
    else if (a === '--root') out.root = value();
    else if (a === '--help' || a === '-h') usage();
    else usage(`unknown argument ${a}`);
  }
  return out;
}

function usage(problem) {
  if (problem) console.error(`spool demo: ${problem}`);
  console.error('usage: node tools/demo.mjs [--port N] [--headless [--screenshot PATH]] [--root DIR]');
  process.exit(problem ? 2 : 0);
}
