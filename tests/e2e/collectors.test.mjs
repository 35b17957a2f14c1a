// spool against the real collectors' rules: tools/collector.mjs's strict PostHog mode
// (/strict/batch/, the rules of PostHog's capture service) and its OTLP mode (/v1/logs, every
// body parsed by the official protobuf bindings, unknown fields refused).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, openPage, startCollector, waitFor, withSpoolPage } from './harness.mjs';

const PAGE = '/tests/e2e/pages/exporter.html';
let browser;

before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

const strictBatches = (collector) => collector.log().batches.filter((b) => b.path === '/strict/batch/');

test('one event cut inside an emoji among 100 costs nothing: capture repairs it and the strict collector takes all 100', async () => {
  await withSpoolPage(browser, PAGE, async ({ page, collector }) => {
    const result = await page.evaluate(async () => {
      const strict = endpoint.replace('/batch/', '/strict/batch/');
      const exporter = new Exporter({ endpoint: strict, apiKey: 'phc_e2e' });
      for (let i = 0; i < 100; i++) {
        const props = i === 41 ? { note: 'x' + '😀'.slice(0, 1) } : { i };
        const name = i === 42 ? 'cut' + '😀'.slice(1) : 'tick';
        const options = i === 43 ? { distinctId: 'user-' + '😀'.slice(0, 1) } : undefined;
        exporter.capture(name, props, options);
      }
      return { report: await exporter.flush(), stats: exporter.stats() };
    });
    assert.deepEqual(result.report, { delivered: 100, dropped: 0 });
    const batches = strictBatches(collector);
    assert.ok(batches.every((b) => b.status === 200), JSON.stringify(batches.map((b) => b.refused)));
    const events = batches.flatMap((b) => b.body.batch);
    assert.equal(events.length, 100);
    assert.equal(events.find((e) => e.properties.note)?.properties.note, 'x\ufffd');
    assert.ok(events.some((e) => e.event === 'cut\ufffd'));
    assert.ok(events.some((e) => e.distinct_id === 'user-\ufffd'));
  });
});

test('a bad event the collector still refuses is isolated: the other 99 are delivered, in a bounded number of requests', async () => {
  await withSpoolPage(browser, PAGE, async ({ page, collector }) => {
    // A collector stricter than spool knows refuses the whole batch for one event.
    collector.control.poison('"poisoned":true');
    const result = await page.evaluate(async () => {
      const strict = endpoint.replace('/batch/', '/strict/batch/');
      const exporter = new Exporter({ endpoint: strict, apiKey: 'phc_e2e' });
      for (let i = 0; i < 100; i++) exporter.capture('tick', i === 57 ? { i, poisoned: true } : { i });
      return { report: await exporter.flush(), stats: exporter.stats() };
    });
    assert.deepEqual(result.report, { delivered: 99, dropped: 1 });
    assert.equal(result.stats.dropped.rejected, 1);
    const batches = strictBatches(collector);
    const delivered = batches.filter((b) => b.status === 200).flatMap((b) => b.body.batch);
    assert.equal(delivered.length, 99);
    assert.ok(!delivered.some((e) => e.properties.poisoned));
    // 1 request, then at most 2·⌈log2 100⌉ = 14 more.
    assert.ok(batches.length <= 15, `${batches.length} requests`);
  });
});

test('properties nested past the parser\'s limit, a blank id or a missing key are refused where the caller sees them', async () => {
  await withSpoolPage(browser, PAGE, async ({ page, collector }) => {
    const result = await page.evaluate(async () => {
      const strict = endpoint.replace('/batch/', '/strict/batch/');
      const errorOf = (f) => {
        try {
          f();
          return null;
        } catch (e) {
          return { name: e.name, field: e.field, message: e.message };
        }
      };
      const missingKey = errorOf(() => new Exporter({ endpoint: strict }));
      const personalKey = errorOf(() => new Exporter({ endpoint: strict, apiKey: 'phx_personal' }));
      const exporter = new Exporter({ endpoint: strict, apiKey: 'phc_e2e' });
      let deep = {};
      for (let i = 0; i < 200; i++) deep = { deep };
      const tooDeep = errorOf(() => exporter.capture('deep', deep));
      const blankId = errorOf(() => exporter.capture('blank', {}, { distinctId: '   ' }));
      const emptyName = errorOf(() => exporter.capture('', {}));
      exporter.capture('fine', { ok: true });
      return { missingKey, personalKey, tooDeep, blankId, emptyName, report: await exporter.flush() };
    });
    assert.equal(result.missingKey.name, 'SpoolConfigError');
    assert.equal(result.missingKey.field, 'apiKey');
    assert.equal(result.personalKey.field, 'apiKey');
    assert.equal(result.tooDeep.name, 'SpoolInvalidEvent');
    assert.equal(result.blankId.name, 'SpoolInvalidEvent');
    assert.equal(result.emptyName.name, 'SpoolInvalidEvent');
    assert.deepEqual(result.report, { delivered: 1, dropped: 0 });
    assert.ok(strictBatches(collector).every((b) => b.status === 200));
  });
});

test('OTLP: every record reaches the official protobuf parser with its time, name, uid and attributes', async () => {
  await withSpoolPage(browser, PAGE, async ({ page, collector }) => {
    const result = await page.evaluate(async () => {
      const otlp = endpoint.replace('/batch/', '/v1/logs');
      const exporter = new Exporter({ endpoint: otlp, format: 'otlp', serviceName: 'shop-web', distinctId: 'user-7' });
      const captured = [];
      for (let i = 0; i < 30; i++) {
        const before = Date.now();
        const props = { i, price: i + 0.5, paid: i % 2 === 0, tags: ['a', i], cart: { items: [{ sku: `s${i}` }] }, cut: 'x' + '😀'.slice(0, 1) };
        const uuid = exporter.capture(`event_${i}`, props);
        captured.push({ i, uuid, before, after: Date.now() });
      }
      return { captured, report: await exporter.flush() };
    });
    assert.deepEqual(result.report, { delivered: 30, dropped: 0 });
    const batches = collector.log().batches.filter((b) => b.path === '/v1/logs');
    assert.ok(batches.length >= 1);
    for (const b of batches) {
      assert.equal(b.status, 200, b.refused);
      assert.equal(b.contentType, 'application/json');
    }
    const records = batches.flatMap((b) => {
      const rl = b.otlp.resourceLogs[0];
      const resource = Object.fromEntries(rl.resource.attributes.map((a) => [a.key, a.value.stringValue]));
      assert.equal(resource['service.name'], 'shop-web');
      assert.equal(resource['telemetry.sdk.name'], 'spool');
      assert.ok(resource['telemetry.sdk.version']);
      assert.equal(rl.scopeLogs[0].scope.name, 'spool');
      return rl.scopeLogs[0].logRecords;
    });
    assert.equal(records.length, 30);
    const byUid = new Map(records.map((r) => [r.attributes.find((a) => a.key === 'log.record.uid').value.stringValue, r]));
    for (const c of result.captured) {
      const r = byUid.get(c.uuid);
      assert.ok(r, `record ${c.i} arrived under its uuid`);
      assert.equal(r.eventName, `event_${c.i}`);
      const ms = Number(BigInt(r.timeUnixNano) / 1_000_000n);
      assert.ok(ms >= c.before && ms <= c.after, `record ${c.i} stamped at capture`);
      assert.equal(r.observedTimeUnixNano, r.timeUnixNano);
      const attrs = Object.fromEntries(r.attributes.map((a) => [a.key, a.value]));
      assert.deepEqual(attrs['user.id'], { stringValue: 'user-7' });
      assert.deepEqual(attrs.i, { intValue: String(c.i) });
      assert.deepEqual(attrs.price, { doubleValue: c.i + 0.5 });
      assert.deepEqual(attrs.paid, { boolValue: c.i % 2 === 0 });
      assert.deepEqual(attrs.tags, { arrayValue: { values: [{ stringValue: 'a' }, { intValue: String(c.i) }] } });
      assert.deepEqual(attrs.cart, {
        kvlistValue: { values: [{ key: 'items', value: { arrayValue: { values: [{ kvlistValue: { values: [{ key: 'sku', value: { stringValue: `s${c.i}` } }] } }] } } }] },
      });
      assert.deepEqual(attrs.cut, { stringValue: 'x\ufffd' });
    }
  });
});

test('OTLP: a partialSuccess answer counts its rejected records, and 503 with Retry-After is retried', async () => {
  await withSpoolPage(browser, PAGE, async ({ page, collector }) => {
    collector.control.plan([
      { status: 503, retryAfter: '1' },
      { status: 200, body: { partialSuccess: { rejectedLogRecords: '2', errorMessage: 'two too many' } } },
    ]);
    const result = await page.evaluate(async () => {
      const otlp = endpoint.replace('/batch/', '/v1/logs');
      const exporter = new Exporter({ endpoint: otlp, format: 'otlp', initialBackoffMs: 10, maxBackoffMs: 10 });
      for (let i = 0; i < 5; i++) exporter.capture('tick', { i });
      return { report: await exporter.flush(), stats: exporter.stats() };
    });
    assert.deepEqual(result.report, { delivered: 3, dropped: 2 });
    assert.equal(result.stats.dropped.rejected, 2);
    const answered = collector.log().batches.filter((b) => b.path === '/v1/logs').map((b) => b.status);
    assert.deepEqual(answered, [503, 200]);
  });
});

/**
 * Queues `count` events for `endpointPath` in `format`, navigates away, and returns what reached
 * the collector: records (OTLP) or events (PostHog), requests and preflights.
 */
async function pageHide(page, collector, { format, count }) {
  await page.evaluate(({ format, count }) => {
    const otlp = format === 'otlp';
    window.exporter = new Exporter({
      endpoint: otlp ? endpoint.replace('/batch/', '/v1/logs') : endpoint,
      ...(otlp ? { format } : { apiKey: 'phc_e2e' }),
      flushIntervalMs: 60_000,
      maxBatchEvents: 10_000,
      maxBatchBytes: 16 << 20,
    });
    for (let i = 0; i < count; i++) window.exporter.capture('queued', { i });
  }, { format, count });
  await page.goto(new URL('/tests/e2e/pages/blank.html', page.url()).href);
  await new Promise((r) => setTimeout(r, 1500));
  const log = collector.log();
  const batches = log.batches.filter((b) => b.status === 200);
  const uuids = batches.flatMap((b) =>
    format === 'otlp'
      ? b.otlp.resourceLogs[0].scopeLogs[0].logRecords.map((r) => r.attributes.find((a) => a.key === 'log.record.uid').value.stringValue)
      : b.body.batch.map((e) => e.uuid),
  );
  const bytes = log.batches.reduce((n, b) => n + b.bytes, 0);
  return { received: uuids.length, unique: new Set(uuids).size, requests: log.batches.length, bytes, preflights: log.preflights };
}

test('page-hide with OTLP\'s application/json: what the CORS preflight costs against text/plain (measured)', async (t) => {
  const results = {};
  for (const format of ['posthog', 'otlp']) {
    for (const count of [300, 1000]) {
      await withSpoolPage(browser, PAGE, async ({ page, collector }) => {
        results[`${format} ${count}`] = await pageHide(page, collector, { format, count });
      });
    }
  }
  // The same from the collector's own origin: no preflight, the body size alone.
  for (const count of [300, 1000]) {
    const site = await startCollector({ port: 0, host: '127.0.0.1' });
    const opened = await openPage(browser, `${site.url}${PAGE}`);
    try {
      await waitFor(() => opened.page.evaluate(() => window.spoolReady), { message: 'spool loaded' });
      results[`otlp ${count} same-origin`] = await pageHide(opened.page, site, { format: 'otlp', count });
    } finally {
      await opened.close();
      await site.close();
    }
  }
  for (const [k, r] of Object.entries(results)) {
    t.diagnostic(`page-hide, ${k} events: ${r.unique} delivered in ${r.requests} requests (${r.bytes} bytes), ${r.preflights} preflights`);
    assert.equal(r.unique, r.received, 'none twice');
  }
  assert.equal(results['posthog 300'].preflights, 0, 'text/plain needs no preflight');
  assert.ok(results['otlp 300'].preflights > 0, 'application/json is preflighted');
  // Chromium lets a keepalive request wait for its preflight while the page goes away.
  assert.ok(results['otlp 300'].unique > 0, 'the preflighted keepalive request got out');
});
