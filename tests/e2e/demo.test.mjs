// The demo page as a visitor uses it: click "Burst 1,000" and watch the page itself count
// 1,000 delivered, while the collector holds each of those events exactly once.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, openPage, waitFor, withCollector } from './harness.mjs';

let browser;

before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

test('clicking burst shows 1,000 delivered on the page, each event received once', async () => {
  await withCollector(async (collector) => {
    const { page, pageErrors, close } = await openPage(browser, `${collector.url}/www/`);
    try {
      const burst = page.getByRole('button', { name: /burst/i });
      // The buttons are enabled once the exporter is running.
      await waitFor(() => burst.isEnabled(), { timeoutMs: 10_000, message: `the page to start (${pageErrors})` });
      await burst.click();

      const delivered = page.getByRole('definition').and(page.locator('[aria-labelledby="delivered-label"]'));
      await waitFor(async () => ['1,000', '1000'].includes(await delivered.textContent()), {
        timeoutMs: 15_000,
        message: 'the page to show 1,000 delivered',
      });

      const batches = collector.log().batches.filter((b) => b.accepted);
      const uuids = batches.flatMap((b) => b.body.batch.filter((e) => e.event === 'burst_event').map((e) => e.uuid));
      assert.equal(uuids.length, 1000, 'the collector accepted 1,000 burst events');
      assert.equal(new Set(uuids).size, 1000, 'each uuid once');
      const shown = await page.evaluate(() => window.spoolDemo.captured);
      assert.deepEqual(new Set(uuids), new Set(shown), 'the uuids the page captured');
      assert.deepEqual(pageErrors, []);
    } finally {
      await close();
    }
  });
});
