// The harness end to end: Chromium loads a page from origin A and POSTs a batch to a collector
// on origin B. Proves the browser, the collector's CORS and the preflight count work before any
// spool test relies on them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, withCrossOrigin, waitFor } from './harness.mjs';

const PAGE = '/tests/e2e/pages/smoke.html';
let browser;

before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

test('a text/plain keepalive POST crosses origins without a preflight', async () => {
  await withCrossOrigin(browser, PAGE, async ({ page, site, collector, pageErrors }) => {
    const result = await waitFor(() => page.evaluate(() => window.smokeResult), { message: 'page result' });
    assert.deepEqual(result, { ok: true, status: 200, body: { status: 1 } }, pageErrors.join('\n'));

    const { batches, preflights } = collector.log();
    assert.equal(batches.length, 1);
    assert.equal(preflights, 0, 'text/plain is CORS-safelisted: no preflight');
    const [b] = batches;
    assert.equal(b.path, '/batch/');
    assert.equal(b.origin, site.url, 'sent from origin A');
    assert.match(b.contentType, /^text\/plain/);
    assert.equal(b.body.api_key, 'k');
    assert.deepEqual(b.body.batch, []);
    assert.equal(b.events, 0);
    assert.ok(Math.abs(Date.parse(b.sentAt) - b.receivedAt) < 60_000, 'sent_at is a current ISO time');
    assert.equal(site.log().batches.length, 0, 'origin A only served the page');
  });
});

// The control case: without it, "no preflight" could mean the collector never counts them.
test('an application/json POST is preflighted, and the preflight is counted', async () => {
  await withCrossOrigin(browser, PAGE, async ({ page, collector }) => {
    const result = await waitFor(() => page.evaluate(() => window.smokeResult), { message: 'page result' });
    assert.equal(result.status, 200);
    assert.equal(collector.log().preflights, 1);
    assert.equal(collector.log().batches.length, 1);
  }, { query: { type: 'application/json' } });
});
