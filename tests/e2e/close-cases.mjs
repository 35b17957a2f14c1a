// The page-close tests' cases, written once for every browser: close.test.mjs runs them in
// Chromium (playwright-core, latency by CDP) and close-firefox.test.mjs in Firefox ESR
// (puppeteer-core over WebDriver BiDi, latency by a delaying proxy: BiDi emulates offline
// only), and close-webkit.test.mjs the navigation and refusing cases in WebKitGTK (WebDriver
// classic, latency by the proxy, no offline). A driver is the module (harness.mjs, firefox.mjs
// or webkit.mjs) plus how it adds latency.
//
// Navigation: N events held when the page navigates to the next load of the same page, at 0
// and 80 ms of latency. They are held as on a slow network: the collector stalls its answers
// while they are captured, so maxInFlight (4) requests of 100 events wait and the rest queue;
// it answers at once again from the navigation on. Every event must arrive, at close
// (keepalive fetch and sendBeacon) or from the next load (localStorage). An event may arrive
// twice only if its request was still in flight at unload: such requests are unanswered, so
// their events were stored too (at-least-once; the uuid makes the repeat idempotent for
// PostHog). The test counts the repeats and checks they are within what was in flight.
//
// Offline: during a spell of `context.setOffline(true)` captures continue and nothing is spent
// against maxAttempts; back online, everything is delivered.

import assert from 'node:assert/strict';
import { startCollector, waitFor } from './harness.mjs';
import { startLatencyProxy } from './firefox.mjs';

export const PAGE = '/tests/e2e/pages/close.html';

/**
 * The uuids of events tagged `run` in requests the collector received but whose connection
 * closed before its answer: the browser gave up on them (in flight at unload), so the page
 * saw them fail, though the collector has them.
 */
export function abandoned(collector, run) {
  const out = new Set();
  for (const b of collector.log().batches) {
    if (b.closedAt === null || !b.accepted || !Array.isArray(b.body?.batch)) continue;
    for (const e of b.body.batch) if (e.properties?.run === run) out.add(e.uuid);
  }
  return out;
}

/** Arrivals per uuid of events tagged `run`, over accepted requests. */
export function arrivals(collector, run) {
  const seen = new Map();
  for (const b of collector.log().batches) {
    if (!b.accepted || !Array.isArray(b.body?.batch)) continue;
    for (const e of b.body.batch) {
      if (e.properties?.run === run) seen.set(e.uuid, (seen.get(e.uuid) ?? 0) + 1);
    }
  }
  return seen;
}

/**
 * Arrivals of events tagged `run` once `n` distinct ones arrived, or what had arrived after a
 * minute (the caller's assertions say what is missing).
 */
async function arrived(collector, run, n) {
  return waitFor(() => {
    const m = arrivals(collector, run);
    return m.size === n && m;
  }, { timeoutMs: 60_000, intervalMs: 200, message: `all ${n} events arrived` }).catch(() => arrivals(collector, run));
}

export async function ready(page) {
  await waitFor(() => page.evaluate(() => window.spoolReady === true).catch(() => false), { message: 'spool loaded', timeoutMs: 10_000 });
}

/**
 * A page origin (`site`) and a collector origin, each a tools/collector.mjs on 127.0.0.1, and a
 * browser context; `open(query)` opens close.html in it and waits for spool. `latency` (ms of
 * round trip) goes in by `latencyVia`: 'cdp' (Chromium's Network.emulateNetworkConditions on
 * each page) or 'proxy' (startLatencyProxy in front of both origins, any browser).
 */
export async function setup(browser, { latency = 0, latencyVia = 'cdp', context: existing } = {}) {
  const site = await startCollector({ port: 0, host: '127.0.0.1' });
  const collector = await startCollector({ port: 0, host: '127.0.0.1' });
  const proxies = [];
  if (latency && latencyVia === 'proxy') {
    proxies.push(await startLatencyProxy(site.url, { rttMs: latency }));
    proxies.push(await startLatencyProxy(collector.url, { rttMs: latency }));
  }
  const [siteUrl, collectorUrl] = proxies.length ? proxies.map((p) => p.url) : [site.url, collector.url];
  const context = existing ?? (await browser.newContext());
  const errors = [];
  const consoleLines = [];
  async function open(query = {}) {
    const page = await context.newPage();
    page.on('pageerror', (e) => errors.push(String(e?.stack ?? e)));
    page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    if (latency && latencyVia === 'cdp') {
      const cdp = await context.newCDPSession(page);
      await cdp.send('Network.enable');
      await cdp.send('Network.emulateNetworkConditions', {
        offline: false, latency, downloadThroughput: -1, uploadThroughput: -1,
      });
    }
    await page.goto(url(query));
    await ready(page);
    return page;
  }
  function url(query) {
    return `${siteUrl}${PAGE}?${new URLSearchParams({ collector: collectorUrl, ...query })}`;
  }
  async function close() {
    await context.close();
    await Promise.all([...proxies.map((p) => p.close()), site.close(), collector.close()]);
  }
  return { site, collector, context, open, url, errors, consoleLines, close };
}

/**
 * The navigation case: `n` events held when the page navigates away, at `latency` ms. Resolves
 * to what it measured, for a browser's own further checks: { arrived, repeats, note (the
 * page's state at pagehide), stats (the next load's) }.
 */
export async function navigation(browser, { n, latency, latencyVia, label = '' }) {
  const s = await setup(browser, { latency, latencyVia });
  try {
    const run = `nav-${n}-${latency}`;
    // The default persistMaxBytes (1 MiB): 10,000 events of ~430 bytes of lines each fit it
    // deflated; the test fails if any is counted as dropped persistCap instead.
    const query = { run };
    const page = await s.open(query);
    s.collector.control.plan([], { status: 200, delayMs: 30_000 });
    const uuids = await page.evaluate((n) => window.closeTest.capture(n), n);
    assert.equal(new Set(uuids).size, n);
    await waitFor(() => s.collector.log().batches.length >= 4, { message: 'the first requests stalled' });
    s.collector.control.plan([], { status: 200, delayMs: 0 });
    // The next load of the same page: it sends what this one stored.
    const navigationStart = Date.now();
    await page.goto(s.url({ ...query, fast: '1' }));
    await ready(page);
    const seen = await arrived(s.collector, run, n);
    const note = await page.evaluate(() => window.closeTest.previous);
    const stats = await page.evaluate(() => window.closeTest.stats());
    const missing = uuids.filter((u) => !seen.has(u));
    const repeats = [...seen.values()].reduce((a, c) => a + c - 1, 0);
    const gaveUp = abandoned(s.collector, run);
    const repeatsGaveUp = [...seen].reduce((a, [u, c]) => a + (gaveUp.has(u) ? c - 1 : 0), 0);
    console.log(`# ${label}N=${n} ${latency} ms: ${seen.size} of ${n} arrived, ${repeats} twice (${repeatsGaveUp} of them from the ${gaveUp.size} in requests the browser gave up on before their answer); at pagehide ${note?.inFlight} in flight and ${note?.queued} held; the next load took in ${stats.restored} and dropped ${stats.dropped.persistCap} (persistCap)`);
    assert.deepEqual(missing.length, 0, `missing ${missing.length} of ${n}; stats of the next load: ${JSON.stringify(stats)}; note: ${JSON.stringify(note)}`);
    assert.ok(note, 'the page noted its state at pagehide');
    // Both browsers have DecompressionStream("deflate-raw"): the copies are stored deflated.
    for (const header of note.copies) assert.match(header, /^spool2 \d+ 0 d$/, 'a copy marked gone, its events deflated');
    // Repeats come only from requests unanswered at unload, whose events were sent again:
    // - by the next load, which stored them (requests in flight at pagehide, or failed as the
    //   page unloaded: Chromium rejects keepalive fetches at unload that still reach the
    //   collector);
    // - by the page itself as it left: at pagehide spool gives up its ordinary requests in
    //   flight (Chromium would end them as the next page commits) and sends their events
    //   again by beacon; Firefox fails the old document's fetches once the navigation starts,
    //   answered or not, and spool sends the events of the ordinary ones again at pagehide.
    // So every receipt of a repeated event but its last ended (answered or closed) after the
    // navigation began: the page never sends again what it took a 2xx for. And an event goes
    // at most three times: before the navigation, at pagehide, from the next load.
    const firstRun = new Map();
    for (const b of s.collector.log().batches) {
      if (!b.accepted || !Array.isArray(b.body?.batch)) continue;
      const ended = Math.min(b.answeredAt ?? Infinity, b.closedAt ?? Infinity);
      for (const e of b.body.batch) {
        if (e.properties?.run !== run) continue;
        if (!firstRun.has(e.uuid)) firstRun.set(e.uuid, []);
        firstRun.get(e.uuid).push(ended);
      }
    }
    let acknowledgedThenSent = 0;
    let most = 0;
    for (const ends of firstRun.values()) {
      most = Math.max(most, ends.length);
      for (const ended of ends.slice(0, -1)) if (ended < navigationStart) acknowledgedThenSent++;
    }
    assert.equal(acknowledgedThenSent, 0, 'events sent again after an answer the page had before the navigation');
    assert.ok(most <= 3, `an event arrived ${most} times`);
    assert.ok(stats.restored <= note.inFlight + note.queued, `the next load took in ${stats.restored}, more than the ${note.inFlight + note.queued} held at unload`);
    assert.deepEqual(s.errors, []);
    return { arrived: seen.size, repeats, note, stats };
  } finally {
    await s.close();
  }
}

/** The offline case: captures during `context.setOffline(true)`, all delivered once online. */
export async function offline(browser) {
  const s = await setup(browser);
  try {
    const run = 'offline';
    const page = await s.open({ run, fast: '1', attempts: '2', backoff: '200' });
    const first = await page.evaluate(() => window.closeTest.capture(20));
    await waitFor(() => arrivals(s.collector, run).size === 20, { message: 'first events delivered' });
    await s.context.setOffline(true);
    const during = [];
    for (let i = 0; i < 10; i++) {
      during.push(...(await page.evaluate((i) => window.closeTest.capture(30, 100 + i * 30), i)));
      await new Promise((r) => setTimeout(r, 200));
    }
    // Long enough for maxAttempts (2) to run out many times over at a 200 ms backoff.
    await new Promise((r) => setTimeout(r, 1500));
    const offline = await page.evaluate(() => window.closeTest.stats());
    assert.equal(offline.dropped.attemptsExhausted, 0, JSON.stringify(offline));
    assert.ok(offline.queued + offline.inFlight > 0, 'events are held while offline');
    await s.context.setOffline(false);
    const all = [...first, ...during];
    await waitFor(() => arrivals(s.collector, run).size === all.length, { timeoutMs: 10_000, message: `all ${all.length} delivered after going online` });
    const stats = await page.evaluate(() => window.closeTest.stats());
    assert.equal(stats.dropped.total, 0, JSON.stringify(stats));
    assert.deepEqual(s.errors, []);
  } finally {
    await s.close();
  }
}

/**
 * The refusing-collector case: `n` events held for a second behind a collector that answers
 * 503 to everything, the page navigates away (to a page without spool) while it still
 * refuses, then it recovers and the page is opened again. A browser accepts a beacon whatever
 * the collector answers, so spool sends none behind a failing collector: every event is
 * stored, and the next load delivers all of them.
 */
export async function refusing(browser, { n = 3_000, label = '' } = {}) {
  const s = await setup(browser);
  try {
    const run = `refusing-${n}`;
    const page = await s.open({ run });
    s.collector.control.plan([], { status: 503, delayMs: 0 });
    const uuids = await page.evaluate((n) => window.closeTest.capture(n), n);
    // A second for spool to see the refusals.
    await new Promise((r) => setTimeout(r, 1_000));
    await waitFor(() => s.collector.log().batches.some((b) => b.status === 503), { message: 'a 503 answered' });
    await page.goto(`${s.site.url}/tests/e2e/pages/blank.html`);
    // What went at page close reaches the collector while it still refuses.
    await new Promise((r) => setTimeout(r, 1_000));
    const atClose = arrivals(s.collector, run).size;
    s.collector.control.plan([], { status: 200, delayMs: 0 });
    await page.goto(s.url({ run, fast: '1' }));
    await ready(page);
    const seen = await arrived(s.collector, run, n);
    const note = await page.evaluate(() => window.closeTest.previous);
    const stats = await page.evaluate(() => window.closeTest.stats());
    const missing = uuids.filter((u) => !seen.has(u)).length;
    const repeats = [...seen.values()].reduce((a, c) => a + c - 1, 0);
    console.log(`# ${label}refusing collector, N=${n}: ${atClose} accepted at close, ${seen.size} of ${n} arrived, ${repeats} twice; at pagehide ${note?.inFlight} in flight, ${note?.queued} held, ${note?.delivered} delivered; the next load took in ${stats.restored}, dropped ${stats.dropped.total}`);
    assert.equal(missing, 0, `missing ${missing} of ${n}; note ${JSON.stringify(note)}; stats ${JSON.stringify(stats)}`);
    assert.equal(note.delivered, 0, 'nothing counted delivered that the collector refused');
    assert.equal(stats.restored, n, 'the next load took in every event');
    assert.deepEqual(s.errors, []);
  } finally {
    await s.close();
  }
}

/**
 * The healthy-collector case: the collector has answered a success, then stalls while `n`
 * events are captured, and answers at once again from the navigation on. At `pagehide` the
 * browser accepts beacons, which count as delivered (the collector's last answer was a
 * success): so no event that went by beacon is stored and sent again by the next load.
 * Beacons are the page's `text/plain` Blob bodies (keepalive fetches say `;charset=UTF-8`).
 * Run in Firefox, whose beacons have no budget: in Chromium they share the 64 KiB keepalive
 * quota with the requests still in flight, and whether any fits varies from run to run.
 */
export async function healthyBeacons(browser, { n = 3_000, label = '' } = {}) {
  const s = await setup(browser);
  try {
    const run = `healthy-${n}`;
    const page = await s.open({ run, fast: '1' });
    const first = await page.evaluate(() => window.closeTest.capture(10));
    await page.evaluate(() => window.closeTest.flush());
    await waitFor(() => arrivals(s.collector, run).size === first.length, { message: 'the first events delivered' });
    s.collector.control.plan([], { status: 200, delayMs: 30_000 });
    const uuids = await page.evaluate((n) => window.closeTest.capture(n, 10), n);
    await waitFor(() => s.collector.log().batches.length >= 5, { message: 'requests stalled' });
    s.collector.control.plan([], { status: 200, delayMs: 0 });
    await page.goto(s.url({ run, fast: '1' }));
    await ready(page);
    const seen = await arrived(s.collector, run, n + first.length);
    const note = await page.evaluate(() => window.closeTest.previous);
    // The events that went by beacon, in the collector's order of arrival, and those of them
    // that arrived again in a later request. (An event may also have arrived
    // before its beacon: a stalled request given up at pagehide, whose events the page sends
    // again, at-least-once.)
    const beaconed = new Set();
    const again = new Set();
    for (const b of s.collector.log().batches) {
      if (!b.accepted || !Array.isArray(b.body?.batch)) continue;
      for (const e of b.body.batch) {
        if (e.properties?.run !== run) continue;
        if (beaconed.has(e.uuid)) again.add(e.uuid);
        else if (b.contentType === 'text/plain') beaconed.add(e.uuid);
      }
    }
    console.log(`# ${label}healthy collector, N=${n}: ${beaconed.size} went by beacon, ${again.size} of them sent again; at pagehide ${note?.delivered} delivered, ${note?.inFlight} in flight, ${note?.queued} held`);
    assert.equal(uuids.filter((u) => !seen.has(u)).length, 0, 'every event arrived');
    assert.ok(beaconed.size > 0, 'beacons went');
    assert.equal(again.size, 0, 'an event the browser took by beacon was stored and sent again');
    assert.deepEqual(s.errors, []);
  } finally {
    await s.close();
  }
}
