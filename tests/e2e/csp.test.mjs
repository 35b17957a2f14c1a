// The package works under `Content-Security-Policy: script-src 'self' 'wasm-unsafe-eval'`:
// no eval, no inline script, no Function constructor anywhere in the glue.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, openCrossOrigin, waitFor } from './harness.mjs';

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

test("under script-src 'self' 'wasm-unsafe-eval' the exporter loads and delivers", async () => {
  const h = await openCrossOrigin(browser, '/tests/e2e/pages/csp.html');
  try {
    await waitFor(() => h.page.evaluate(() => window.done), { timeoutMs: 10_000, message: 'page finished' });
    const state = await h.page.evaluate(() => ({
      evalBlocked: window.evalBlocked,
      violations: window.violations,
      failure: window.failure ?? null,
      report: window.report ?? null,
    }));
    assert.equal(state.evalBlocked, true, 'the policy is in force (eval refused)');
    assert.equal(state.failure, null);
    // The page's own eval probe is the one expected violation.
    const others = state.violations.filter((v) => !v.startsWith('script-src eval'));
    assert.deepEqual(others, [], 'no other violation');
    assert.deepEqual(state.report, { delivered: 10, dropped: 0 });
    const events = h.collector.log().batches.flatMap((b) => b.body?.batch ?? []);
    assert.equal(events.filter((e) => e.event === 'csp_event').length, 10);
    assert.deepEqual(h.pageErrors, []);
  } finally {
    await h.close();
  }
});
