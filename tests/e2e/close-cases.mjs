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
// Other ways of leaving, each with the same N events held and the same checks: a cross-site
// navigation (to http://localhost, then back to the page's origin on 127.0.0.1), the tab
// closed (with beforeunload run; a new tab opens the page again), and a navigation away and
// back (`history.back()`), where a browser with a back/forward cache shows the same page again.
// Each prints what arrived at close (before the page showing spool again began), in all, the
// repeats (arrivals of a uuid already received) and what was lost.
//
// Offline: during a spell of `context.setOffline(true)` captures continue and nothing is spent
// against maxAttempts; back online, everything is delivered.

import assert from 'node:assert/strict';
import http from 'node:http';
import { startCollector, waitFor } from './harness.mjs';
import { startLatencyProxy } from './firefox.mjs';

export const PAGE = '/tests/e2e/pages/close.html';
const BLANK = '/tests/e2e/pages/blank.html';

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
 * An HTTP proxy on 127.0.0.1 in front of `targetUrl` that answers `Cache-Control: no-cache`
 * where the target says `no-store`, as a site whose pages may be kept: tools/collector.mjs
 * says `no-store` to everything (the tests reload pkg/ after every build), and Chromium keeps
 * no page in its back/forward cache whose document, or a fetch answer it read, said so
 * (MainResourceHasCacheControlNoStore, JsNetworkRequestReceivedCacheControlNoStoreResource).
 * `no-cache` still has every load revalidate. Returns { url, close() }.
 */
export function startCacheableProxy(targetUrl) {
  return startProxy(() => targetUrl, (headers) => {
    if (/no-store/i.test(headers['cache-control'] ?? '')) headers['cache-control'] = 'no-cache';
    return headers;
  });
}

/**
 * An HTTP proxy on 127.0.0.1 that passes each request to the origin `targetOf(req)` names and
 * its answer back, its headers through `answerHeaders` (a copy, to change). Returns
 * { url, close() }.
 */
export async function startProxy(targetOf, answerHeaders = (headers) => headers) {
  const server = http.createServer((req, res) => {
    const target = new URL(targetOf(req));
    const upstream = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode, answerHeaders({ ...answer.headers }));
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    // A client giving up on a request (a page unloading) gives it up upstream too.
    res.on('close', () => { if (!res.writableFinished) upstream.destroy(); });
    req.pipe(upstream);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * A page origin (`site`) and a collector origin, each a tools/collector.mjs on 127.0.0.1, and a
 * browser context; `open(query)` opens close.html in it and waits for spool. `latency` (ms of
 * round trip) goes in by `latencyVia`: 'cdp' (Chromium's Network.emulateNetworkConditions on
 * each page) or 'proxy' (startLatencyProxy in front of both origins, any browser).
 * `cacheable`: both origins behind startCacheableProxy, so a page may enter the back/forward
 * cache.
 */
export async function setup(browser, { latency = 0, latencyVia = 'cdp', cacheable = false, context: existing } = {}) {
  const site = await startCollector({ port: 0, host: '127.0.0.1' });
  const collector = await startCollector({ port: 0, host: '127.0.0.1' });
  const proxies = [];
  let [siteUrl, collectorUrl] = [site.url, collector.url];
  const via = async (start) => {
    const pair = [await start(siteUrl), await start(collectorUrl)];
    proxies.push(...pair);
    [siteUrl, collectorUrl] = pair.map((p) => p.url);
  };
  if (cacheable) await via(startCacheableProxy);
  if (latency && latencyVia === 'proxy') await via((url) => startLatencyProxy(url, { rttMs: latency }));
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
  /** A page of the site without spool. */
  function blankUrl() {
    return `${siteUrl}${BLANK}`;
  }
  const others = [];
  /**
   * A page without spool on another site: a tools/collector.mjs of its own on 127.0.0.1,
   * reached as http://localhost (a different host, so a different site; a secure context too).
   */
  async function otherSite() {
    const other = await startCollector({ port: 0, host: '127.0.0.1' });
    others.push(other);
    return `http://localhost:${new URL(other.url).port}${BLANK}`;
  }
  async function close() {
    await context.close();
    await Promise.all([...proxies.map((p) => p.close()), ...others.map((o) => o.close()), site.close(), collector.close()]);
  }
  return { site, collector, context, open, url, blankUrl, otherSite, errors, consoleLines, close };
}

/**
 * The navigation case: `n` events held when the page navigates away, at `latency` ms. Resolves
 * to what it measured, for a browser's own further checks: { arrived, atClose, repeats, note
 * (the page's state at pagehide), stats (the next load's) }.
 */
export function navigation(browser, options) {
  return heldWhenLeaving(browser, SAME_SITE_NAVIGATION, options);
}

/**
 * The cross-site case: as `navigation`, but the page navigates to a page of another site
 * (http://localhost:<port>, while spool's page is on http://127.0.0.1: both secure contexts),
 * and the spool page is then opened again on its origin in the same tab. Chromium runs the
 * other site in another renderer process, so the unloading page and the next document overlap.
 */
export function crossSite(browser, options) {
  return heldWhenLeaving(browser, CROSS_SITE_NAVIGATION, options);
}

/**
 * The tab-close case: the tab is closed with `beforeunload` run
 * (`page.close({ runBeforeUnload: true })`), and a new tab of the same context opens the page
 * again. A tab of the origin without spool stays open throughout, opened before the spool tab:
 * WebDriver classic ends the session with its last window.
 */
export function tabClose(browser, options) {
  return heldWhenLeaving(browser, TAB_CLOSE, options);
}

/**
 * The back/forward case: the page navigates to another page of its origin and the test goes
 * back with `history.back()`. A browser with a back/forward cache shows the same page again
 * (`pageshow` with `persisted`), which sends what it still holds; one without loads the page
 * again, which takes in the stored copy. Either way nothing is lost; `fromCache` says which.
 */
export function backForward(browser, options) {
  return heldWhenLeaving(browser, BACK_FORWARD, options);
}

// How the page leaves, and how the test brings the spool page back on its origin. `prepare`
// runs before the spool page opens; `leave(s, page, next)` resolves once the page has left
// (or the next load has begun, for a navigation straight to it); `comeBack(s, page, next)`
// resolves to the page showing spool again, loaded or restored.
const SAME_SITE_NAVIGATION = {
  name: 'nav',
  title: '',
  async leave() {},
  async comeBack(s, page, next) {
    await page.goto(next);
    return page;
  },
};

const CROSS_SITE_NAVIGATION = {
  name: 'cross-site',
  title: 'cross-site navigation, ',
  async leave(s, page) {
    await page.goto(await s.otherSite());
  },
  async comeBack(s, page, next) {
    await page.goto(next);
    return page;
  },
};

const TAB_CLOSE = {
  name: 'tab-close',
  title: 'tab closed, ',
  async prepare(s) {
    const spare = await s.context.newPage();
    await spare.goto(s.blankUrl());
  },
  async leave(s, page) {
    await page.close({ runBeforeUnload: true });
    // Playwright's close with runBeforeUnload does not wait for the tab to go.
    await waitFor(() => page.isClosed(), { message: 'the tab closed', timeoutMs: 10_000 });
  },
  comeBack(s, page, next, query) {
    return s.open(query);
  },
};

const BACK_FORWARD = {
  name: 'back-forward',
  title: 'back/forward, ',
  cacheable: true,
  async leave(s, page) {
    await page.goto(s.blankUrl());
  },
  async comeBack(s, page) {
    // A timer, so the script returns before the document goes.
    await page.evaluate(() => { setTimeout(() => history.back(), 0); });
    return page;
  },
};

/**
 * `n` events held, at `latency` ms, when the page leaves `way`; then the spool page on its
 * origin again, and every event must arrive. Held as in the navigation case: the collector
 * stalls its answers while they are captured, and answers at once again from the moment the
 * page is told to leave. Resolves to what it measured and `checkPagehide`, the checks of what
 * spool did at pagehide, which run here unless `deferPagehideChecks` (a browser's test may
 * hold them to a `todo` of their own). Page errors matching `knownError` (a RegExp) are left
 * out of the checks here and resolved as `knownErrors`, for such a `todo`.
 */
async function heldWhenLeaving(browser, way, { n, latency = 0, latencyVia, label = '', deferPagehideChecks = false, knownError = null }) {
  const s = await setup(browser, { latency, latencyVia, cacheable: way.cacheable });
  try {
    const run = `${way.name}-${n}-${latency}`;
    // The default persistMaxBytes (1 MiB): 10,000 events of ~430 bytes of lines each fit it
    // deflated; the test fails if any is counted as dropped persistCap instead.
    const query = { run };
    await way.prepare?.(s);
    const page = await s.open(query);
    s.collector.control.plan([], { status: 200, delayMs: 30_000 });
    const uuids = await page.evaluate((n) => window.closeTest.capture(n), n);
    assert.equal(new Set(uuids).size, n);
    await waitFor(() => s.collector.log().batches.length >= 4, { message: 'the first requests stalled' });
    s.collector.control.plan([], { status: 200, delayMs: 0 });
    const leftAt = Date.now();
    const next = s.url({ ...query, fast: '1' });
    await way.leave(s, page, next);
    const shown = await way.comeBack(s, page, next, { ...query, fast: '1' });
    await ready(shown);
    const seen = await arrived(s.collector, run, n);
    const back = await shown.evaluate(() => {
      const t = window.closeTest;
      return { previous: t.previous, late: t.late(), startedAt: t.startedAt, hides: t.hides, shows: t.shows, stats: t.stats() };
    });
    // Restored from the back/forward cache: the same document, shown again; its own note of
    // leaving is in memory. Otherwise a next load, with the note its predecessor stored: when
    // the next load began, or later (Chromium runs a page's pagehide in its own process after a
    // cross-site navigation, and may do so after the next load of its origin began).
    const restore = back.shows.find((e) => e.persisted);
    if (!restore && !back.previous && back.late === null) {
      // Its pagehide has not run yet: wait for its note a while.
      back.late = await waitFor(() => shown.evaluate(() => window.closeTest.late()), { timeoutMs: 5_000, message: 'the old page noted its pagehide' })
        .catch(() => null);
    }
    const lateHide = !restore && !back.previous && back.late !== null;
    const note = restore ? back.hides.at(-1) : (back.previous ?? back.late);
    const backAt = restore ? restore.at : back.startedAt;
    // Everything arrived, maybe before the next load took in what was stored (a second after
    // it began, or once a copy's writer may no longer run): wait for that too, so the repeats
    // are all counted and the stored copy is checked. A note without stats (spool refused the
    // call) says nothing of what was held.
    const held = note && !note.busy ? note.inFlight + note.queued : null;
    const settled = (st) => st.inFlight + st.queued === 0 && (restore || held === null || held === 0 || st.restored > 0);
    const stats = await waitFor(async () => {
      const st = await shown.evaluate(() => window.closeTest.stats());
      return settled(st) && st;
    }, { timeoutMs: 15_000, intervalMs: 100, message: 'the page shown again holding nothing, having taken in what was stored' })
      .catch(() => shown.evaluate(() => window.closeTest.stats()));
    const t = tally(s.collector, run, uuids, { leftAt, backAt });
    const cache = way === BACK_FORWARD ? (restore ? '; shown again from the back/forward cache' : '; loaded again (not from the back/forward cache)') : '';
    console.log(`# ${label}${way.title}N=${n} ${latency} ms: ${t.atClose} delivered at close, ${seen.size} of ${n} in all, ${t.repeats} repeats (${t.repeatsGaveUp} of them from the ${t.gaveUp} in requests the browser gave up on before their answer), ${t.missing.length} lost; at pagehide ${note?.inFlight} in flight and ${note?.queued} held${note ? ` (persisted ${note.persisted}, ${note.visibility}${lateHide ? ', pagehide after the next load began' : ''}${note.busy ? ', spool busy: its pagehide did not return' : ''})` : ', no pagehide noted'}; ${restore ? 'the page shown again' : 'the next load'} took in ${stats.restored} and dropped ${stats.dropped.persistCap} (persistCap)${cache}`);
    const known = knownError ? s.errors.filter((e) => knownError.test(e)) : [];
    assertNothingLost(t, { n, note, stats, errors: s.errors.filter((e) => !known.includes(e)) });
    const checkPagehide = () => assertPagehideFinished(note, stats, { restored: Boolean(restore) });
    if (!deferPagehideChecks) checkPagehide();
    return { arrived: seen.size, atClose: t.atClose, repeats: t.repeats, note, stats, fromCache: Boolean(restore), lateHide, checkPagehide, knownErrors: known };
  } finally {
    await s.close();
  }
}

/**
 * What the collector has of `uuids`, the events tagged `run`, when the page was told to leave
 * at `leftAt` and the page showing spool again began at `backAt` (ms): `seen` (arrivals per
 * uuid), `missing` (captured, never arrived), `atClose` (arrived before `backAt`), `repeats`
 * (arrivals of a uuid already received), `gaveUp` (events in requests the browser gave up on
 * before their answer) and `repeatsGaveUp` (repeats of those), `sentAfterAnswer` (receipts,
 * but the last of an event, that ended before `leftAt`) and `most` (the most receipts of one
 * event).
 */
export function tally(collector, run, uuids, { leftAt, backAt }) {
  const receipts = new Map();
  for (const b of collector.log().batches) {
    if (!b.accepted || !Array.isArray(b.body?.batch)) continue;
    const ended = Math.min(b.answeredAt ?? Infinity, b.closedAt ?? Infinity);
    for (const e of b.body.batch) {
      if (e.properties?.run !== run) continue;
      if (!receipts.has(e.uuid)) receipts.set(e.uuid, []);
      receipts.get(e.uuid).push({ receivedAt: b.receivedAt, ended });
    }
  }
  const seen = new Map([...receipts].map(([u, r]) => [u, r.length]));
  const gaveUp = abandoned(collector, run);
  let atClose = 0;
  let repeats = 0;
  let repeatsGaveUp = 0;
  let sentAfterAnswer = 0;
  let most = 0;
  for (const [uuid, r] of receipts) {
    if (r.some((x) => x.receivedAt < backAt)) atClose++;
    repeats += r.length - 1;
    if (gaveUp.has(uuid)) repeatsGaveUp += r.length - 1;
    most = Math.max(most, r.length);
    for (const x of r.slice(0, -1)) if (x.ended < leftAt) sentAfterAnswer++;
  }
  const missing = uuids.filter((u) => !seen.has(u));
  return { seen, missing, atClose, repeats, gaveUp: gaveUp.size, repeatsGaveUp, sentAfterAnswer, most };
}

/**
 * The at-least-once rules, from a `tally`, the page's `note` at pagehide, the `stats` of the
 * page showing spool again and the page errors seen: nothing lost, nothing sent again that the
 * page had an answer for, no event more than three times.
 */
function assertNothingLost(t, { n, note, stats, errors }) {
  assert.equal(t.missing.length, 0, `missing ${t.missing.length} of ${n}; stats of the next load: ${JSON.stringify(stats)}; note: ${JSON.stringify(note)}`);
  // Repeats come only from requests unanswered when the page left, whose events were sent again:
  // - by the next load, which stored them (requests in flight at pagehide, or failed as the
  //   page unloaded: Chromium rejects keepalive fetches at unload that still reach the
  //   collector);
  // - by the page itself as it left: at pagehide spool gives up its ordinary requests in
  //   flight (Chromium would end them as the next page commits) and sends their events
  //   again by beacon; Firefox fails the old document's fetches once the navigation starts,
  //   answered or not, and spool sends the events of the ordinary ones again at pagehide;
  // - by the page shown again from the back/forward cache, which still holds what it had no
  //   answer for.
  // So every receipt of a repeated event but its last ended (answered or closed) after the
  // page was told to leave: the page never sends again what it took a 2xx for. And an event
  // goes at most three times: before leaving, at pagehide, from the next load.
  assert.equal(t.sentAfterAnswer, 0, 'events sent again after an answer the page had before it was told to leave');
  assert.ok(t.most <= 3, `an event arrived ${t.most} times`);
  assert.deepEqual(errors, []);
}

/**
 * What spool did at pagehide, from the page's `note` and the `stats` of the page showing spool
 * again: it ran to the end (the exporter answered the note's call), stored what it held in a
 * copy marked gone (so the next load takes it at once, not after PERSIST_LIVE_MS), and the next
 * load took that copy in; a page `restored` from the back/forward cache took in nothing,
 * holding its events still.
 */
function assertPagehideFinished(note, stats, { restored }) {
  assert.ok(note, 'the page noted its state at pagehide');
  assert.equal(note.busy, false, `spool's pagehide did not return: the exporter refused the next call (SpoolBusy); copies ${JSON.stringify(note.copies)}`);
  const held = note.inFlight + note.queued;
  // What is sent at close (keepalive, beacons) may well all arrive, as the collector answers
  // at once from then on. What went keepalive (in flight, or failed by the browser as the
  // page unloaded) is carried on by the browser: with the collector's last answer a success
  // when the page is gone, it is left out of the copy, so a copy may hold less than what was
  // held, or be none (nothing is lost: `assertNothingLost`; the refusing case checks that
  // everything is stored when the collector was failing).
  // Marked gone. Every browser here has CompressionStream and DecompressionStream("deflate-raw"):
  // batches packed ahead are stored as packed (`d` first); what was not packed yet goes plain.
  for (const header of note.copies) assert.match(header, /^spool3 \d+ 0 [dp]$/, 'a copy marked gone');
  if (restored) {
    assert.equal(stats.restored, 0, 'the page shown again took nothing in: it still held its events');
    return;
  }
  // Not always all of it: a closing tab may still run after pagehide, and what its keepalive
  // requests are answered for then is settled and stored no longer.
  assert.ok(stats.restored <= held, `the next load took in ${stats.restored}, more than the ${held} held at unload`);
  if (note.copies.length > 0) assert.ok(stats.restored > 0, `the next load took in none of the ${held} held at pagehide, though a copy was stored`);
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
 * Opens the page of `s` for `run`, has the collector answer its first 10 events, then stall
 * while `n` more are captured until 5 requests wait unanswered. Resolves to the page and the
 * uuids: `first` (delivered) and `uuids` (held).
 */
export async function answeredThenStalled(s, run, n) {
  const page = await s.open({ run, fast: '1' });
  const first = await page.evaluate(() => window.closeTest.capture(10));
  await page.evaluate(() => window.closeTest.flush());
  await waitFor(() => arrivals(s.collector, run).size === first.length, { message: 'the first events delivered' });
  s.collector.control.plan([], { status: 200, delayMs: 30_000 });
  const uuids = await page.evaluate((n) => window.closeTest.capture(n, 10), n);
  await waitFor(() => s.collector.log().batches.length >= 5, { message: 'requests stalled' });
  return { page, first, uuids };
}

/**
 * The healthy-collector case: the collector has answered a success, then stalls while `n`
 * events are captured and the page navigates away, and answers at once again once the next
 * page has loaded. At `pagehide` the
 * browser accepts beacons, which count as delivered (the collector's last answer was a
 * success): so no event that went by beacon is stored and sent again by the next load.
 * Beacons are the page's gzip bytes with no `Content-Type` (fetches say `text/plain;charset=UTF-8`).
 * Run in Firefox, whose beacons have no budget: in Chromium they share the 64 KiB keepalive
 * quota with the requests still in flight, and whether any fits varies from run to run.
 */
export async function healthyBeacons(browser, { n = 3_000, label = '' } = {}) {
  const s = await setup(browser);
  try {
    const run = `healthy-${n}`;
    const { page, first, uuids } = await answeredThenStalled(s, run, n);
    // Still stalled as the page leaves: the keepalive requests wait unanswered, and what they
    // leave goes by beacon.
    await page.goto(s.url({ run, fast: '1' }));
    s.collector.control.plan([], { status: 200, delayMs: 0 });
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
        else if (b.contentType === null) beaconed.add(e.uuid);
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
