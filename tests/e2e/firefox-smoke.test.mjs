// The Firefox harness end to end: firefox-esr (puppeteer-core over WebDriver BiDi) loads the
// built pkg/ from origin A, captures, and flushes to tools/collector.mjs on origin B; then the
// harness's offline switch, navigation and latency proxy are shown to do what the page-close and
// offline tests need of them. Needs `make build` first; `make test-e2e` does that.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, waitFor, withSpoolPage } from './firefox.mjs';

const PAGE = '/tests/e2e/pages/exporter.html';
const ELSEWHERE = '/tests/e2e/pages/blank.html';
let browser;

before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

/** Every event the collector received, with its batch. */
function events(collector) {
  return collector.log().batches.flatMap((b) => (b.body?.batch ?? []).map((e) => ({ ...e, batch: b })));
}

test('in Firefox, 250 captured events are flushed to a cross-origin collector, each once', async () => {
  assert.match(browser.version(), /^firefox\//);
  await withSpoolPage(browser, PAGE, async ({ page, collector, site }) => {
    const result = await page.evaluate(async () => {
      const exporter = new Exporter({ endpoint, apiKey: 'phc_firefox', compression: 'none' });
      const uuids = [];
      for (let i = 0; i < 250; i++) uuids.push(exporter.capture('firefox_smoke', { i }));
      const report = await exporter.flush();
      return { uuids, report, stats: exporter.stats() };
    });
    assert.deepEqual(result.report, { delivered: 250, dropped: 0 });
    const received = events(collector);
    assert.equal(received.length, 250);
    assert.deepEqual(new Set(received.map((e) => e.uuid)), new Set(result.uuids));
    assert.deepEqual(received.map((e) => e.properties.i).sort((a, b) => a - b), [...Array(250).keys()]);
    for (const b of collector.log().batches) {
      assert.equal(b.origin, site.url, 'sent from the page origin (cross-origin)');
      assert.equal(b.body.api_key, 'phc_firefox');
    }
  });
});

test('in Firefox, context.setOffline(true) makes the page offline (navigator.onLine, fetch fails) and false brings it back', async () => {
  await withSpoolPage(browser, PAGE, async ({ page, context, collector }) => {
    await page.evaluate(() => {
      window.seen = [];
      addEventListener('offline', () => seen.push('offline'));
      addEventListener('online', () => seen.push('online'));
    });
    const probe = () =>
      page.evaluate(async () => {
        let status;
        try {
          status = (await fetch(endpoint, { method: 'POST', body: '{"api_key":"k","batch":[]}' })).status;
        } catch (e) {
          status = e.name;
        }
        return { onLine: navigator.onLine, status, seen: [...seen] };
      });
    await context.setOffline(true);
    assert.deepEqual(await probe(), { onLine: false, status: 'TypeError', seen: ['offline'] });
    assert.equal(collector.log().batches.length, 0, 'nothing reached the collector while offline');
    await context.setOffline(false);
    assert.deepEqual(await probe(), { onLine: true, status: 200, seen: ['offline', 'online'] });
    assert.equal(collector.log().batches.length, 1);
  });
});

test('in Firefox, a navigation fires pagehide in the old page, and what it sends then reaches the collector', async () => {
  await withSpoolPage(browser, PAGE, async ({ page, collector, endpoint }) => {
    await page.evaluate(() => {
      addEventListener('pagehide', () => {
        navigator.sendBeacon(endpoint, JSON.stringify({ api_key: 'k', batch: [{ event: 'bye', uuid: 'x' }] }));
      });
    });
    // The page navigates itself (as a click on a link), and the harness waits for the next one.
    const next = new URL(ELSEWHERE, page.url()).href;
    await page.evaluate((next) => setTimeout(() => (location.href = next), 0), next);
    await page.waitForURL(next);
    await waitFor(() => events(collector).some((e) => e.event === 'bye'), { message: 'the pagehide beacon' });
    // And once more with goto, from the next page.
    await page.evaluate((endpoint) => {
      addEventListener('pagehide', () => navigator.sendBeacon(endpoint, '{"api_key":"k","batch":[{"event":"again","uuid":"y"}]}'));
    }, endpoint);
    await page.goto(new URL(PAGE, page.url()).href);
    await waitFor(() => events(collector).some((e) => e.event === 'again'), { message: 'the second pagehide beacon' });
  });
});

test('in Firefox, latencyMs puts the round trip in front of the page and the collector', async () => {
  // Without the proxy: the round trip to the collector, for scale. Each side is the least of
  // three round trips, so a cold connection on a busy machine does not set the scale.
  const ROUNDS = 3;
  const time = (page) =>
    page.evaluate(async (rounds) => {
      let least = Infinity;
      for (let i = 0; i < rounds; i++) {
        const t = performance.now();
        await fetch(endpoint, { method: 'POST', body: '{"api_key":"k","batch":[]}' });
        least = Math.min(least, performance.now() - t);
      }
      return least;
    }, ROUNDS);
  const direct = await withSpoolPage(browser, PAGE, ({ page }) => time(page));
  const proxied = await withSpoolPage(browser, PAGE, async ({ page, endpoint, collector }) => {
    assert.notEqual(new URL(endpoint).port, new URL(collector.url).port, 'the page sends through the proxy');
    const ms = await time(page);
    assert.equal(collector.log().batches.length, ROUNDS);
    return ms;
  }, { latencyMs: 80 });
  assert.ok(proxied >= 80, `a request through the 80 ms proxy takes at least 80 ms (took ${proxied.toFixed(0)})`);
  assert.ok(proxied > direct + 40, `and longer than without (${direct.toFixed(0)} ms)`);
});
