// The exporter under faults in a real browser, with every request it makes recorded in the
// page (pages/wire-recorder.mjs). Needs `make build` first; `make test-e2e` does that.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, openCrossOrigin, waitFor } from './harness.mjs';

const PAGE = '/tests/e2e/pages/reliability.html';

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

/** Opens the reliability page sending to a collector on another origin; runs fn; cleans up. */
async function crossOrigin(fn) {
  const handles = await openCrossOrigin(browser, PAGE);
  try {
    await waitFor(() => handles.page.evaluate(() => window.spoolReady), { message: 'spool loaded' });
    return await fn(handles);
  } catch (err) {
    err.message += `\npage errors: ${handles.pageErrors.join('\n')}\nconsole: ${handles.consoleMessages.slice(-20).join('\n')}`;
    throw err;
  } finally {
    await handles.close();
  }
}

test('a timed-out request is aborted before the request that takes its slot starts (maxInFlight 1)', async () => {
  await crossOrigin(async ({ page, collector }) => {
    collector.control.plan([{ status: 200, delayMs: 3000 }], { status: 200 });
    const result = await page.evaluate(async () => {
      const recorder = recordWire();
      const exporter = new Exporter({
        endpoint,
        debug: true,
        maxInFlight: 1,
        maxBatchEvents: 1,
        requestTimeoutMs: 300,
        // The timed-out batch retries late: the queued one takes the freed slot first.
        initialBackoffMs: 2000,
        maxBackoffMs: 2000,
      });
      exporter.capture('first', {});
      exporter.capture('second', {});
      const report = await exporter.flush();
      recorder.uninstall();
      return { report, ...recorder.result() };
    });
    assert.deepEqual(result.report, { delivered: 2, dropped: 0 });
    assert.deepEqual(result.unexpected, []);
    const [stalled, next] = result.transmits;
    assert.equal(stalled.end.how, 'aborted');
    assert.ok(stalled.end.seq < next.sent.seq, 'aborted before the next request started');
    assert.equal(result.max.ordinary, 1, 'never two requests open at once');
  });
});
