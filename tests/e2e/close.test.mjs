// Nothing lost when the tab navigates away or the network drops: real Chromium, the built
// package (pkg/), tools/collector.mjs on 127.0.0.1. The page logic lives in
// pages/close.html + close.mjs, driver-agnostic, so a Firefox driver can run the same pages.
//
// Navigation: N events held when the page navigates to the next load of the same page, at 0
// and 80 ms of emulated latency (CDP). They are held as on a slow network: the collector
// stalls its answers while they are captured, so maxInFlight (4) requests of 100 events wait
// and the rest queue; it answers at once again from the navigation on. Every event must arrive, at close
// (keepalive fetch and sendBeacon) or from the next load (localStorage). An event may arrive
// twice only if its request was still in flight at unload: such requests are unanswered, so
// their events were stored too (at-least-once; the uuid makes the repeat idempotent for
// PostHog). The test counts the repeats and checks they are within what was in flight.

import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, startCollector, waitFor } from './harness.mjs';

const PAGE = '/tests/e2e/pages/close.html';
let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

/** Arrivals per uuid of events tagged `run`, over accepted requests. */
function arrivals(collector, run) {
  const seen = new Map();
  for (const b of collector.log().batches) {
    if (!b.accepted || !Array.isArray(b.body?.batch)) continue;
    for (const e of b.body.batch) {
      if (e.properties?.run === run) seen.set(e.uuid, (seen.get(e.uuid) ?? 0) + 1);
    }
  }
  return seen;
}

async function setup({ latency = 0, context: existing } = {}) {
  const site = await startCollector({ port: 0, host: '127.0.0.1' });
  const collector = await startCollector({ port: 0, host: '127.0.0.1' });
  const context = existing ?? (await browser.newContext());
  const errors = [];
  const consoleLines = [];
  async function open(query = {}) {
    const page = await context.newPage();
    page.on('pageerror', (e) => errors.push(String(e?.stack ?? e)));
    page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    if (latency) {
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
    return `${site.url}${PAGE}?${new URLSearchParams({ collector: collector.url, ...query })}`;
  }
  async function close() {
    await context.close();
    await Promise.all([site.close(), collector.close()]);
  }
  return { site, collector, context, open, url, errors, consoleLines, close };
}

async function ready(page) {
  await waitFor(() => page.evaluate(() => window.spoolReady === true).catch(() => false), { message: 'spool loaded', timeoutMs: 10_000 });
}

for (const n of [1_000, 3_000, 10_000]) {
  for (const latency of [0, 80]) {
    test(`navigation with ${n} events held at ${latency} ms: every event arrives at close or from the next load`, async () => {
      const s = await setup({ latency });
      try {
        const run = `nav-${n}-${latency}`;
        // 10,000 events of ~430 stored bytes each need more than the default 1 MiB (beyond it
        // the oldest are counted as dropped persistCap); 4 MiB fits them.
        const query = n > 3_000 ? { run, persistMaxBytes: String(4 << 20) } : { run };
        const page = await s.open(query);
        s.collector.control.plan([], { status: 200, delayMs: 30_000 });
        const uuids = await page.evaluate((n) => window.closeTest.capture(n), n);
        assert.equal(new Set(uuids).size, n);
        await waitFor(() => s.collector.log().batches.length >= 4, { message: 'the first requests stalled' });
        s.collector.control.plan([], { status: 200, delayMs: 0 });
        // The next load of the same page: it sends what this one stored.
        await page.goto(s.url({ ...query, fast: '1' }));
        await ready(page);
        const seen = await waitFor(() => {
          const m = arrivals(s.collector, run);
          return m.size === n && m;
        }, { timeoutMs: 60_000, intervalMs: 200, message: `all ${n} events arrived` }).catch(() => arrivals(s.collector, run));
        const note = await page.evaluate(() => window.closeTest.previous);
        const stats = await page.evaluate(() => window.closeTest.stats());
        const missing = uuids.filter((u) => !seen.has(u));
        const repeats = [...seen.values()].reduce((a, c) => a + c - 1, 0);
        console.log(`# N=${n} ${latency} ms: ${seen.size} of ${n} arrived, ${repeats} twice; at pagehide ${note?.inFlight} in flight and ${note?.queued} held; the next load took in ${stats.restored} and dropped ${stats.dropped.persistCap} (persistCap)`);
        assert.deepEqual(missing.length, 0, `missing ${missing.length} of ${n}; stats of the next load: ${JSON.stringify(stats)}; note: ${JSON.stringify(note)}`);
        assert.ok(note, 'the page noted its state at pagehide');
        // Repeats come only from requests unanswered at unload (in flight, or failed as the page
        // unloaded: Chromium rejects keepalive fetches at unload that still reach the
        // collector), whose events were also stored and sent again by the next load.
        assert.ok(repeats <= stats.restored, `${repeats} repeats, but the next load sent only ${stats.restored}`);
        assert.ok(stats.restored <= note.inFlight + note.queued, `the next load took in ${stats.restored}, more than the ${note.inFlight + note.queued} held at unload`);
        assert.deepEqual(s.errors, []);
      } finally {
        await s.close();
      }
    });
  }
}

test('offline: captures continue, nothing is spent against maxAttempts, and going online delivers everything', async () => {
  const s = await setup();
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
});

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
    const stored = notes.reduce((x, n) => x + n.inFlight + n.queued, 0);
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
    console.log(`# tabs: ${stored} stored at unload; the next loads took in ${ra} + ${rb}`);
    assert.ok(stored > 0, 'something was stored');
    assert.equal(ra + rb, stored, 'each stored event is taken in by one tab exactly');
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
