// Nothing lost when the tab navigates away (same site or cross-site), closes, comes back from
// the back/forward cache, or the network drops: real Chromium, the built package (pkg/),
// tools/collector.mjs on 127.0.0.1. The page logic lives in pages/close.html + close.mjs,
// driver-agnostic; the cases live in close-cases.mjs (what they check is described there), and
// close-firefox.test.mjs and close-webkit.test.mjs run them in Firefox ESR and WebKitGTK.
// Latency here is CDP's Network.emulateNetworkConditions. After a cross-site navigation
// Chromium may run the old page's pagehide (in its own process) after the next load of its
// origin began; a closed tab fires beforeunload (runBeforeUnload), pagehide and unload.

import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, waitFor } from './harness.mjs';
import { abandoned, answeredThenStalled, arrivals, backForward, crossSite, navigation, offline, ready, refusing, setup as setupIn, tabClose } from './close-cases.mjs';

let browser;
// Playwright starts Chromium with --disable-back-forward-cache; the back/forward case runs in a
// second Chromium with the cache on, started when that case first runs.
let withCache;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await (await withCache)?.close();
});

const setup = (options) => setupIn(browser, options);

for (const n of [1_000, 3_000, 10_000]) {
  for (const latency of [0, 80]) {
    test(`navigation with ${n} events held at ${latency} ms: every event arrives at close or from the next load`, () =>
      navigation(browser, { n, latency, latencyVia: 'cdp' }));
  }
}

for (const [n, latency] of [[1_000, 0], [3_000, 0], [1_000, 80]]) {
  test(`cross-site navigation with ${n} events held at ${latency} ms: every event arrives at close or from the next load on the page's origin`, () =>
    crossSite(browser, { n, latency, latencyVia: 'cdp' }));
  test(`tab closed with ${n} events held at ${latency} ms: every event arrives at close or from the next load in a new tab`, () =>
    tabClose(browser, { n, latency, latencyVia: 'cdp' }));
}

for (const [n, latency] of [[1_000, 0], [3_000, 0], [1_000, 80]]) {
  test(`back/forward with ${n} events held at ${latency} ms: the page shown again from the back/forward cache delivers every event`, async () => {
    withCache ??= launchBrowser({ ignoreDefaultArgs: ['--disable-back-forward-cache'] });
    const { fromCache } = await backForward(await withCache, { n, latency, latencyVia: 'cdp' });
    // Else the case would test a next load, as the navigation case does.
    assert.ok(fromCache, 'Chromium showed the page again from its back/forward cache');
  });
}

test('3,000 events held behind a collector answering 503 when the page navigates away: no beacon is counted delivered, and the next load delivers all of them', () =>
  refusing(browser, { n: 3_000 }));

test('offline: captures continue, nothing is spent against maxAttempts, and going online delivers everything', () =>
  offline(browser));

test('two tabs with stored events reloaded together: each stored event is taken in by one tab only', async () => {
  const s = await setup();
  try {
    const run = 'tabs';
    const a = await s.open({ run, tab: 'a' });
    const b = await s.open({ run, tab: 'b' });
    // The collector holds every answer for 3 s while the tabs capture and unload, so what
    // they send stays unanswered and is stored as well (the next loads' first requests wait
    // for it too: the browser's connections to the collector are busy until then).
    s.collector.control.plan([], { status: 200, delayMs: 3_000 });
    const ua = await a.evaluate(() => window.closeTest.capture(1000, 0));
    const ub = await b.evaluate(() => window.closeTest.capture(1000, 10_000));
    const next = (tab) => s.url({ run, tab, fast: '1' });
    await Promise.all([a.goto(next('a')), b.goto(next('b'))]);
    s.collector.control.plan([], { status: 200, delayMs: 0 });
    await Promise.all([ready(a), ready(b)]);
    const notes = [await a.evaluate(() => window.closeTest.previous), await b.evaluate(() => window.closeTest.previous)];
    // What the pages held at unload, each event once: a page still unloading when the other
    // tab's copy was marked gone (its own read a second after it loaded, late on a busy
    // machine) took that copy in and stored it again with its own; those it restored are
    // counted in the other tab's note already.
    const stored = notes.reduce((x, n) => x + n.inFlight + n.queued - n.restored, 0);
    const all = [...ua, ...ub];
    await waitFor(() => arrivals(s.collector, run).size === all.length, { timeoutMs: 15_000, message: 'every event arrived' }).catch(async (e) => {
      const st = [await a.evaluate(() => window.closeTest.stats()), await b.evaluate(() => window.closeTest.stats())];
      e.message += ` ${arrivals(s.collector, run).size} of ${all.length}; notes ${JSON.stringify(notes)}; stats ${JSON.stringify(st)}`;
      throw e;
    });
    // Read again a second after each load starts: wait for that pass too.
    await new Promise((r) => setTimeout(r, 1500));
    const ra = await a.evaluate(() => window.closeTest.stats().restored);
    const rb = await b.evaluate(() => window.closeTest.stats().restored);
    console.log(`# tabs: ${stored} stored at unload; the next loads took in ${ra} + ${rb}; notes ${JSON.stringify(notes)}`);
    assert.ok(stored > 0, 'something was stored');
    assert.equal(ra + rb, stored, 'each stored event is taken in by one tab exactly');
  } finally {
    await s.close();
  }
});

test('without DecompressionStream the copy is stored plain, and the next load takes it in', async () => {
  const s = await setup();
  try {
    await s.context.addInitScript(() => { delete window.DecompressionStream; });
    const run = 'no-inflate';
    const page = await s.open({ run });
    // The collector refuses while the page is held and leaves: everything is stored (nothing
    // can be shown to have reached it).
    s.collector.control.plan([], { status: 503, delayMs: 0 });
    const uuids = await page.evaluate(() => window.closeTest.capture(1000));
    await waitFor(() => s.collector.log().batches.some((b) => b.status === 503), { message: 'a 503 answered' });
    await new Promise((r) => setTimeout(r, 500));
    await page.goto(`${s.site.url}/tests/e2e/pages/blank.html`);
    s.collector.control.plan([], { status: 200, delayMs: 0 });
    await page.goto(s.url({ run, fast: '1' }));
    await ready(page);
    const note = await page.evaluate(() => window.closeTest.previous);
    assert.ok(note.copies.length > 0, 'a copy was stored');
    for (const header of note.copies) assert.match(header, /^spool3 \d+ 0 p$/, 'its events plain');
    try {
      await waitFor(() => arrivals(s.collector, run).size === uuids.length, { timeoutMs: 20_000, message: 'every event arrived' });
    } catch (err) {
      // Say where the rest is: on the page, in storage, or refused.
      const seen = await page.evaluate(() => ({
        stats: window.closeTest.stats(),
        stored: Object.keys(localStorage).map((k) => `${k}: ${localStorage.getItem(k).slice(0, 40)}`),
      }));
      const sent = s.collector.log().batches.map((b) => `${b.status}/${b.events}`).join(' ');
      err.message += `; ${arrivals(s.collector, run).size} of ${uuids.length} arrived; requests ${sent}; ${JSON.stringify(seen)}`;
      throw err;
    }
    const stats = await page.evaluate(() => window.closeTest.stats());
    assert.equal(stats.restored, uuids.length);
    assert.equal(stats.storageErrors, 0);
  } finally {
    await s.close();
  }
});

test('a copy another load took while this page still runs is not stored again: the next copy holds only what came after', async () => {
  const s = await setup();
  try {
    // Without DecompressionStream the copy is plain: its uuids can be read.
    await s.context.addInitScript(() => { delete window.DecompressionStream; });
    const run = 'taken';
    const page = await s.open({ run, attempts: '100', backoff: '300' });
    // The collector refuses, and the page keeps retrying: what is captured stays held, and a
    // navigation's start stores it.
    s.collector.control.plan([], { status: 503, delayMs: 0 });
    const first = await page.evaluate(() => window.closeTest.capture(20));
    await page.evaluate(() => dispatchEvent(new Event('beforeunload')));
    const copy = () => page.evaluate(() => {
      const key = Object.keys(localStorage).find((k) => k.startsWith('spool1:') && !k.endsWith(':claim'));
      return key && { key, text: localStorage.getItem(key) };
    });
    const stored = await waitFor(copy, { message: 'a copy stored' });
    for (const uuid of first) assert.ok(stored.text.includes(uuid), 'every held event in the copy');
    // Another load takes it in (its claim removes the text it took); this page captures on.
    await page.evaluate((key) => localStorage.removeItem(key), stored.key);
    const later = await page.evaluate(() => window.closeTest.capture(5, 20));
    const again = await waitFor(copy, { message: 'a copy stored again' });
    for (const uuid of later) assert.ok(again.text.includes(uuid), 'what came after is stored');
    for (const uuid of first) assert.ok(!again.text.includes(uuid), 'what the other load took is not stored again');
  } finally {
    await s.close();
  }
});

for (const [name, script] of [
  ['localStorage that throws', () => {
    Object.defineProperty(window, 'localStorage', { get() { throw new DOMException('denied', 'SecurityError'); } });
  }],
  ['a full localStorage quota', () => {
    Storage.prototype.setItem = function () { throw new DOMException('full', 'QuotaExceededError'); };
  }],
]) {
  test(`bad storage (${name}): counted and logged once, the page unaffected, nothing lost silently`, async () => {
    const s = await setup();
    try {
      await s.context.addInitScript(script);
      const run = 'bad-storage';
      const page = await s.open({ run, fast: '1' });
      const uuids = await page.evaluate(() => window.closeTest.capture(50));
      // A navigation starting (beforeunload) writes what is held: storage fails.
      await page.evaluate(() => dispatchEvent(new Event('beforeunload')));
      await page.evaluate(() => dispatchEvent(new Event('beforeunload')));
      const stats = await page.evaluate(() => window.closeTest.stats());
      assert.ok(stats.storageErrors >= 1, JSON.stringify(stats));
      const warnings = s.consoleLines.filter((l) => l.includes('localStorage failed'));
      assert.equal(warnings.length, 1, s.consoleLines.join('\n'));
      // The page and the exporter carry on: everything captured is delivered.
      await page.evaluate(() => window.closeTest.flush());
      await waitFor(() => arrivals(s.collector, run).size === uuids.length, { message: 'delivered' });
      assert.deepEqual(s.errors, []);
    } finally {
      await s.close();
    }
  });
}

for (const compression of ['gzip', 'none']) {
  test(`compression "${compression}": ordinary batches go ${compression === 'gzip' ? 'gzipped (magic bytes, text/plain, no preflight)' : 'plain'}, with sent_at stamped per attempt`, async () => {
    const s = await setup();
    try {
      const run = `gz-${compression}`;
      // The first answer fails, so the batch is sent twice: each attempt has its own sent_at.
      s.collector.control.plan([{ status: 503 }]);
      const page = await s.open({ run, fast: '1', compression, backoff: '300' });
      const uuids = await page.evaluate(() => window.closeTest.capture(200));
      await page.evaluate(() => window.closeTest.flush());
      await waitFor(() => arrivals(s.collector, run).size === uuids.length, { message: 'delivered' });
      const batches = s.collector.log().batches;
      const json = batches.reduce((a, b) => a + JSON.stringify(b.body).length, 0);
      const wire = batches.reduce((a, b) => a + b.bytes, 0);
      console.log(`# compression ${compression}: ${batches.length} requests, ${wire} bytes on the wire for ${json} bytes of JSON`);
      assert.ok(batches.every((b) => b.gzip === (compression === 'gzip')), JSON.stringify(batches.map((b) => b.gzip)));
      assert.ok(batches.every((b) => b.contentType.startsWith('text/plain')));
      assert.equal(s.collector.log().preflights, 0);
      if (compression === 'gzip') assert.ok(wire < json / 3, `${wire} of ${json}`);
      const first = batches[0];
      const retry = batches.find((b) => b.seq > first.seq && b.body.batch[0].uuid === first.body.batch[0].uuid);
      assert.ok(retry && retry.sentAt > first.sentAt, 'the retry has a later sent_at');
    } finally {
      await s.close();
    }
  });
}

// Chromium has fetchLater: while the collector answers, what the page holds stays armed as
// deferred requests, and a navigation delivers it with nothing to run at unload. A deferred
// body carries no sent_at (its send time is not known), which is how the collector's log tells
// one apart. The collector answers, then stalls while 1,000 events are captured (4 requests
// wait unanswered) and for a second and a half after, and answers at once again from the
// navigation on.
for (const n of [1_000, 3_000]) {
  test(`fetchLater: ${n} events held behind a collector that answered are armed and delivered at close, counted delivered and not stored`, async () => {
    const s = await setup();
    try {
      const run = `deferred-${n}`;
      const { page, first, uuids } = await answeredThenStalled(s, run, n);
      // Batches are armed once held a second (DEFERRED_AFTER_MS): most are answered sooner.
      await new Promise((r) => setTimeout(r, 1_500));
      s.collector.control.plan([], { status: 200, delayMs: 0 });
      const leaving = Date.now();
      await page.goto(s.url({ run, fast: '1' }));
      await ready(page);
      const seen = await waitFor(() => {
        const m = arrivals(s.collector, run);
        return m.size === n + first.length && m;
      }, { timeoutMs: 30_000, message: 'every event arrived' }).catch(() => arrivals(s.collector, run));
      const note = await page.evaluate(() => window.closeTest.previous);
      const stats = await page.evaluate(() => window.closeTest.stats());
      // What came by deferred request (no sent_at, in the body or as the URL's `_`), and when.
      const deferred = new Set();
      let deferredRequests = 0;
      for (const b of s.collector.log().batches) {
        if (!b.accepted || !Array.isArray(b.body?.batch) || b.sentAt !== null) continue;
        deferredRequests++;
        assert.ok(b.receivedAt >= leaving, 'a deferred request went before the page left');
        for (const e of b.body.batch) if (e.properties?.run === run) deferred.add(e.uuid);
      }
      const repeats = [...seen.values()].reduce((a, c) => a + c - 1, 0);
      const gaveUp = abandoned(s.collector, run);
      console.log(`# fetchLater N=${n}: ${deferred.size} events in ${deferredRequests} deferred requests; at pagehide ${note?.delivered} delivered, ${note?.inFlight} in flight, ${note?.queued} held; the next load took in ${stats.restored}; ${seen.size} of ${n + first.length} arrived, ${repeats} twice (${gaveUp.size} in requests given up at unload)`);
      assert.equal(uuids.filter((u) => !seen.has(u)).length, 0, 'every event arrived');
      // The stalled requests outlive the page (keepalive): the browser carries their events,
      // which are not armed too (at pagehide still in flight, or failed by Chromium as the
      // page unloaded, so held).
      assert.ok(deferred.size >= Math.min(n, 1_000) - note.inFlight - note.queued, `deferred requests carried ${deferred.size}`);
      // Counted delivered at pagehide: what went by deferred request, and by beacon (the
      // collector's last answer was a success); what keepalive requests carry is left to the
      // browser; the rest is stored for the next load.
      assert.ok(note.delivered >= first.length + deferred.size, 'what went by deferred request is counted delivered at pagehide');
      assert.ok(stats.restored <= n + first.length - note.delivered, 'and is not stored for the next load');
      // Repeats: the events of the requests given up at unload (the collector had them), and
      // of what did not fit the deferred quota and went keepalive, unanswered, so stored too.
      assert.ok(repeats <= gaveUp.size + (n - deferred.size), `${repeats} repeats`);
      assert.deepEqual(s.errors, []);
    } finally {
      await s.close();
    }
  });
}
