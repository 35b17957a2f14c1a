// The browser shell end to end: the built pkg/ in headless Chromium, sending to
// tools/collector.mjs on another origin (and, for page-hide, on the same one too).
// Needs `make build` (wasm-pack build --target web) first; `make test-e2e` does that.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, openPage, startCollector, waitFor, withSpoolPage } from './harness.mjs';

const PAGE = '/tests/e2e/pages/exporter.html';
const ELSEWHERE = '/tests/e2e/pages/blank.html';
const WORKER_PAGE = '/tests/e2e/pages/worker.html';
let browser;

before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

/** Opens the exporter page (origin A) sending to a collector on origin B; runs fn; cleans up. */
async function crossOrigin(fn, pagePath = PAGE) {
  return withSpoolPage(browser, pagePath, fn);
}

/** Every event the collector received, in arrival order, with its batch. */
function events(collector) {
  return collector.log().batches.flatMap((b) => (b.body?.batch ?? []).map((e) => ({ ...e, batch: b })));
}

test('2,000 events with maxBatchEvents 100 arrive exactly once, in about 20 requests, keeping their timestamps and uuids', async () => {
  await crossOrigin(async ({ page, collector }) => {
    const captured = await page.evaluate(async () => {
      const exporter = new Exporter({ endpoint, apiKey: 'phc_e2e', maxBatchEvents: 100 });
      const captured = [];
      for (let i = 0; i < 2000; i++) {
        const before = Date.now();
        const uuid = exporter.capture('tick', { i });
        captured.push({ i, uuid, before, after: Date.now() });
      }
      const report = await exporter.flush();
      return { captured, report, stats: exporter.stats() };
    });
    assert.deepEqual(captured.report, { delivered: 2000, dropped: 0 });
    const received = events(collector);
    assert.equal(received.length, 2000, 'every event arrived');
    assert.equal(new Set(received.map((e) => e.uuid)).size, 2000, 'none twice');
    const requests = collector.log().batches.length;
    assert.ok(requests >= 20 && requests <= 22, `about 20 requests, got ${requests}`);
    const byUuid = new Map(received.map((e) => [e.uuid, e]));
    for (const c of captured.captured) {
      const e = byUuid.get(c.uuid);
      assert.ok(e, `event ${c.i} arrived under the uuid capture returned`);
      assert.equal(e.properties.i, c.i);
      const ts = Date.parse(e.timestamp);
      assert.ok(ts >= c.before && ts <= c.after, `event ${c.i} stamped at capture: ${e.timestamp}`);
    }
    for (const b of collector.log().batches) {
      assert.equal(b.body.api_key, 'phc_e2e');
      assert.match(b.contentType, /^text\/plain/);
    }
    assert.equal(collector.log().preflights, 0, 'text/plain without custom headers: no preflight');
    assert.equal(captured.stats.delivered, 2000);
    assert.equal(captured.stats.dropped.total, 0);
  });
});

test('an event flushed 1.5 s after capture keeps its capture timestamp; sent_at is the send time', async () => {
  await crossOrigin(async ({ page, collector }) => {
    const times = await page.evaluate(async () => {
      const exporter = new Exporter({ endpoint, apiKey: 'phc_test', flushIntervalMs: 60_000 });
      const before = Date.now();
      exporter.capture('late', {});
      const after = Date.now();
      await new Promise((r) => setTimeout(r, 1500));
      const flushedAt = Date.now();
      await exporter.flush();
      return { before, after, flushedAt };
    });
    const [batch] = collector.log().batches;
    const ts = Date.parse(batch.body.batch[0].timestamp);
    const sentAt = Date.parse(batch.body.sent_at);
    // Bracketed by the clock read just before and after the call (on a busy machine the call
    // itself can take a few ms).
    assert.ok(ts >= times.before && ts <= times.after, `timestamp ${ts} is the capture time, within [${times.before}, ${times.after}]`);
    assert.ok(sentAt >= times.flushedAt && sentAt <= batch.receivedAt, `sent_at ${sentAt} is the send time`);
    assert.ok(sentAt - ts >= 1500, 'sent_at is 1.5 s after the timestamp');
  });
});

for (const form of ['delta-seconds', 'HTTP-date']) {
  test(`429 with Retry-After (${form}): nothing is sent before it ends; the retry carries the same uuids and a newer sent_at`, async () => {
    await crossOrigin(async ({ page, collector }) => {
      // An HTTP-date has whole seconds: 3 s ahead names a moment between 2 and 3 s away.
      const retryAfter = form === 'delta-seconds' ? '2' : new Date(Date.now() + 3000).toUTCString();
      const notBefore = (answeredAt) =>
        form === 'delta-seconds' ? answeredAt + 2000 : Date.parse(retryAfter);
      collector.control.plan([{ status: 429, retryAfter }], { status: 200 });
      const report = await page.evaluate(async () => {
        // A tiny backoff: only Retry-After can hold the retry back.
        const exporter = new Exporter({ endpoint, apiKey: 'phc_test', initialBackoffMs: 1, maxBackoffMs: 1, flushIntervalMs: 60_000 });
        for (let i = 0; i < 5; i++) exporter.capture('limited', { i });
        const first = exporter.flush();
        // Captured while the endpoint is held back: must wait too.
        await new Promise((r) => setTimeout(r, 300));
        exporter.capture('later', {});
        const second = exporter.flush();
        return { first: await first, second: await second, stats: exporter.stats() };
      });
      assert.deepEqual(report.first, { delivered: 5, dropped: 0 });
      // The second flush waits for everything captured before it, the first five included.
      assert.deepEqual(report.second, { delivered: 6, dropped: 0 });
      const [refused, ...rest] = collector.log().batches;
      assert.equal(refused.status, 429);
      assert.ok(rest.length >= 1);
      const gate = notBefore(refused.answeredAt);
      for (const b of rest) {
        assert.ok(b.receivedAt >= gate - 5, `request at ${b.receivedAt} came before Retry-After ended at ${gate}`);
      }
      const retried = rest.find((b) => b.body.batch.some((e) => e.event === 'limited'));
      assert.deepEqual(
        retried.body.batch.map((e) => e.uuid).sort(),
        refused.body.batch.map((e) => e.uuid).sort(),
        'the retry carries the same uuids',
      );
      assert.ok(Date.parse(retried.sentAt) > Date.parse(refused.sentAt), 'a newer sent_at');
      assert.equal(report.stats.lastError, 'HTTP 429');
      assert.ok(report.stats.retried >= 1);
    });
  });
}

test('503 then 200: delivered after a backoff', async () => {
  await crossOrigin(async ({ page, collector }) => {
    collector.control.plan([{ status: 503 }], { status: 200 });
    const result = await page.evaluate(async () => {
      const exporter = new Exporter({ endpoint, apiKey: 'phc_test', initialBackoffMs: 50, maxBackoffMs: 100 });
      for (let i = 0; i < 3; i++) exporter.capture('flaky', { i });
      const report = await exporter.flush();
      return { report, stats: exporter.stats() };
    });
    assert.deepEqual(result.report, { delivered: 3, dropped: 0 });
    const [failed, retried] = collector.log().batches;
    assert.equal(failed.status, 503);
    assert.equal(retried.status, 200);
    assert.deepEqual(retried.body.batch.map((e) => e.uuid), failed.body.batch.map((e) => e.uuid));
    assert.equal(result.stats.retried, 1);
    assert.equal(result.stats.delivered, 3);
    assert.equal(result.stats.lastError, 'HTTP 503');
  });
});

test('400 for every body: the batch is halved until each event was refused alone, then dropped as rejected', async () => {
  await crossOrigin(async ({ page, collector }) => {
    collector.control.plan([], { status: 400 });
    const result = await page.evaluate(async () => {
      const exporter = new Exporter({ endpoint, apiKey: 'phc_test', initialBackoffMs: 10, maxBackoffMs: 10 });
      for (let i = 0; i < 4; i++) exporter.capture('refused', { i });
      const report = await exporter.flush();
      await new Promise((r) => setTimeout(r, 300));
      return { report, stats: exporter.stats() };
    });
    assert.deepEqual(result.report, { delivered: 0, dropped: 4 });
    // 4, then 2 + 2, then 1 + 1 + 1 + 1: 2·4 − 1 requests, the most bisection ever costs. The
    // halves go concurrently, so a 1 may arrive before the other 2: sizes are compared sorted.
    const sizes = collector.log().batches.map((b) => b.events);
    assert.equal(sizes[0], 4);
    assert.deepEqual(sizes.sort((a, b) => b - a), [4, 2, 2, 1, 1, 1, 1]);
    assert.equal(result.stats.dropped.rejected, 4);
    assert.equal(result.stats.dropped.total, 4);
    assert.equal(result.stats.lastError, 'HTTP 400');
  });
});

/**
 * Queues `count` events with a long linger, navigates away; returns what the collector got,
 * and how many requests left before the navigation.
 */
async function navigateAway(page, collector, count) {
  await page.evaluate((count) => {
    // Batches as large as allowed: only a batch that fills one keepalive body once gzipped
    // (what a page cuts its batches to) leaves before the page goes away.
    window.exporter = new Exporter({ endpoint, apiKey: 'phc_test', flushIntervalMs: 60_000, maxBatchEvents: 10_000, maxBatchBytes: 16 << 20 });
    for (let i = 0; i < count; i++) window.exporter.capture('queued', { i });
    if (window.exporter.stats().queued !== count) throw new Error('not all queued');
  }, count);
  const before = collector.log().batches.length;
  await page.goto(new URL(ELSEWHERE, page.url()).href);
  // Keepalive requests finish after the page is gone: give them a moment.
  await waitFor(() => events(collector).length >= count, { timeoutMs: 5000, message: `${count} events` }).catch(() => {});
  await new Promise((r) => setTimeout(r, 300));
  return { received: events(collector), before };
}

test('300 queued events reach a cross-origin collector when the page navigates away (keepalive, no preflight)', async () => {
  await crossOrigin(async ({ page, collector }) => {
    const { received, before } = await navigateAway(page, collector, 300);
    assert.equal(before, 0, 'nothing sent before the page goes away');
    assert.equal(received.length, 300, 'every event got out');
    assert.equal(new Set(received.map((e) => e.uuid)).size, 300, 'none twice');
    assert.equal(collector.log().preflights, 0, 'no preflight during unload');
    for (const b of collector.log().batches) assert.match(b.contentType, /^text\/plain/);
  });
});

test('300 queued events reach a same-origin collector when the page navigates away', async () => {
  const site = await startCollector({ port: 0, host: '127.0.0.1' });
  const opened = await openPage(browser, `${site.url}${PAGE}`);
  try {
    await waitFor(() => opened.page.evaluate(() => window.spoolReady), { message: 'spool loaded' });
    const { received, before } = await navigateAway(opened.page, site, 300);
    assert.equal(before, 0, 'nothing sent before the page goes away');
    assert.equal(received.length, 300, 'every event got out');
    assert.equal(new Set(received.map((e) => e.uuid)).size, 300, 'none twice');
  } finally {
    await opened.close();
    await site.close();
  }
});

test('1,000 small queued events at navigation all reach the collector, once', async (t) => {
  await crossOrigin(async ({ page, collector }) => {
    const { received, before } = await navigateAway(page, collector, 1000);
    const unique = new Set(received.map((e) => e.uuid)).size;
    const batches = collector.log().batches;
    // About 480 of these fill one 16 KiB gzip body: that batch may leave while the rest are
    // captured (how soon depends on the compressor), the rest goes at page-hide.
    t.diagnostic(`${unique} of 1000 events in ${batches.length} requests (${batches.reduce((n, b) => n + b.bytes, 0)} bytes), ${before} of them sent before the navigation`);
    assert.equal(unique, received.length, 'none twice');
    assert.equal(unique, 1000, 'every event got out');
  });
});

test('each bad input throws a clear Error, and a capture afterwards still works', async () => {
  await crossOrigin(async ({ page }) => {
    const results = await page.evaluate(async () => {
      const attempt = (fn) => {
        try {
          fn();
          return { threw: false };
        } catch (e) {
          return { threw: true, isError: e instanceof Error, name: e.name, message: e.message, field: e.field };
        }
      };
      const exporter = new Exporter({ endpoint, apiKey: 'phc_test', flushIntervalMs: 60_000 });
      const cycle = {};
      cycle.self = cycle;
      const cases = {
        cycle: () => exporter.capture('e', cycle),
        bigint: () => exporter.capture('e', { n: 10n }),
        function: () => exporter.capture('e', () => 1),
        nonStringName: () => exporter.capture(42, {}),
        invalidEndpoint: () => new Exporter({ endpoint: 'not a url' }),
        outOfRange: () => new Exporter({ endpoint, apiKey: 'phc_test', maxBatchEvents: 0 }),
        wrongType: () => new Exporter({ endpoint, apiKey: 'phc_test', flushIntervalMs: '1000' }),
      };
      const out = {};
      for (const [name, fn] of Object.entries(cases)) {
        out[name] = attempt(fn);
        out[name].after = typeof exporter.capture('after ' + name, { ok: true });
      }
      const stopped = new Exporter({ endpoint, apiKey: 'phc_test' });
      await stopped.shutdown();
      out.afterShutdown = attempt(() => stopped.capture('late', {}));
      out.afterShutdown.after = typeof exporter.capture('after afterShutdown', {});
      out.queued = exporter.stats().queued;
      return out;
    });
    const expected = {
      cycle: ['SpoolInvalidEvent', /circular/i],
      bigint: ['SpoolInvalidEvent', /BigInt/],
      function: ['SpoolInvalidEvent', /function/],
      nonStringName: ['SpoolInvalidEvent', /name must be a string/],
      invalidEndpoint: ['SpoolConfigError', /endpoint/],
      outOfRange: ['SpoolConfigError', /maxBatchEvents must be from 1/],
      wrongType: ['SpoolConfigError', /flushIntervalMs must be a number/],
      afterShutdown: ['SpoolShutDown', /shut down/],
    };
    for (const [name, [errorName, message]] of Object.entries(expected)) {
      const r = results[name];
      assert.ok(r.threw && r.isError, `${name} throws an Error: ${JSON.stringify(r)}`);
      assert.equal(r.name, errorName, name);
      assert.match(r.message, message, name);
      assert.match(r.message, /^spool: /, name);
      assert.equal(r.after, 'string', `a capture after ${name} still works`);
    }
    assert.equal(results.invalidEndpoint.field, 'endpoint');
    assert.equal(results.outOfRange.field, 'maxBatchEvents');
    assert.equal(results.queued, 8);
  });
});

test('in a Web Worker (no window, no document) the exporter captures, flushes and shuts down', async () => {
  await crossOrigin(async ({ page, collector }) => {
    const result = await page.evaluate(() => runInWorker(endpoint, 50));
    assert.equal(result.error, undefined, result.error);
    assert.equal(result.hasWindow, false);
    assert.deepEqual(result.report, { delivered: 50, dropped: 0 });
    assert.deepEqual(result.shutdown, { delivered: 0, dropped: 0, abandoned: 0 });
    assert.equal(events(collector).length, 50);
  }, WORKER_PAGE);
});

test('a request unanswered within requestTimeoutMs is aborted and retried', async () => {
  await crossOrigin(async ({ page, collector }) => {
    collector.control.plan([{ status: 200, delayMs: 3000 }], { status: 200 });
    const result = await page.evaluate(async () => {
      const exporter = new Exporter({ endpoint, apiKey: 'phc_test', requestTimeoutMs: 400, initialBackoffMs: 20, maxBackoffMs: 20 });
      exporter.capture('slow', {});
      const started = Date.now();
      const report = await exporter.flush();
      return { report, elapsed: Date.now() - started, stats: exporter.stats() };
    });
    assert.deepEqual(result.report, { delivered: 1, dropped: 0 });
    assert.ok(result.elapsed < 2000, `did not wait for the stalled answer (${result.elapsed} ms)`);
    assert.equal(result.stats.lastError, 'timeout');
    assert.equal(result.stats.retried, 1);
    assert.equal(result.stats.inFlight, 0);
    const [stalled, retry] = collector.log().batches;
    assert.equal(retry.body.batch[0].uuid, stalled.body.batch[0].uuid, 'same uuid: the server can dedupe');
  });
});

test('shutdown abandons what is still unsent at its deadline and says how much', async () => {
  await crossOrigin(async ({ page, collector }) => {
    collector.control.plan([], { status: 200, delayMs: 5000 });
    const result = await page.evaluate(async () => {
      const exporter = new Exporter({ endpoint, apiKey: 'phc_test', flushIntervalMs: 60_000 });
      for (let i = 0; i < 7; i++) exporter.capture('stuck', { i });
      const started = Date.now();
      const report = await exporter.shutdown({ timeoutMs: 300 });
      return { report, elapsed: Date.now() - started, stats: exporter.stats() };
    });
    assert.deepEqual(result.report, { delivered: 0, dropped: 7, abandoned: 7 });
    assert.ok(result.elapsed >= 290 && result.elapsed < 1500, `resolved at the deadline (${result.elapsed} ms)`);
    assert.equal(result.stats.dropped.shutdown, 7);
    assert.equal(result.stats.inFlight, 0);
    assert.equal(collector.log().batches.length, 1, 'sent once, then abandoned');
  });
});

test('a delivered batch shows in the browser as finished, not failed: answers are read to their end, not cancelled', async () => {
  await crossOrigin(async ({ page, collector }) => {
    const failed = [];
    const finished = [];
    page.on('requestfailed', (r) => { if (r.method() === 'POST') failed.push(`${r.url()} ${r.failure()?.errorText}`); });
    page.on('requestfinished', (r) => { if (r.method() === 'POST') finished.push(r.url()); });
    const report = await page.evaluate(async () => {
      const exporter = new Exporter({ endpoint, apiKey: 'phc_e2e', maxBatchEvents: 10 });
      for (let i = 0; i < 30; i++) exporter.capture('tick', { i });
      return exporter.flush();
    });
    assert.deepEqual(report, { delivered: 30, dropped: 0 });
    await waitFor(() => finished.length >= collector.log().batches.length, { message: 'every request finished' }).catch((e) => {
      e.message += ` (${finished.length} finished, failed: ${JSON.stringify(failed)}, ${collector.log().batches.length} received: ${JSON.stringify(collector.log().batches.map((b) => [b.status, b.events, b.closedAt !== null]))})`;
      throw e;
    });
    assert.ok(collector.log().batches.length >= 3);
    assert.deepEqual(failed, [], 'requests reported as failed after their answer');
  });
});
