//! Helpers for spool's end-to-end tests (node:test + playwright-core + tools/collector.mjs).
//!
//! Everything listens on 127.0.0.1 and the browser is Debian's Chromium, so no test needs the
//! internet. A typical browser test:
//!
//!   const browser = await launchBrowser();            // once per file: launching costs ~1 s
//!   await withCrossOrigin(browser, '/tests/e2e/pages/x.html', async ({ page, collector }) => {
//!     await waitFor(() => collector.log().batches.length === 1);
//!   });
//!   await browser.close();

import { chromium } from 'playwright-core';
import { startCollector } from '../../tools/collector.mjs';

export { startCollector };

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

// Flags that keep Chromium from talking to Google services (no network here) and from
// failing in a container (no sandbox without user namespaces, small /dev/shm, no GPU).
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

/** Launches headless Chromium. Close it with `browser.close()`. */
export function launchBrowser({ args = [], ...options } = {}) {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [...CHROMIUM_ARGS, ...args],
    ...options,
  });
}

/** Runs `fn(collector)` with a fresh collector on an ephemeral port; always closes it. */
export async function withCollector(fn, options = {}) {
  const collector = await startCollector({ port: 0, host: '127.0.0.1', ...options });
  try {
    return await fn(collector);
  } finally {
    await collector.close();
  }
}

/**
 * Polls `predicate` (may be async) until it returns a truthy value, which is returned.
 * Rejects after `timeoutMs` with `message` and the last value seen, so a failure says what
 * it was waiting for.
 */
export async function waitFor(predicate, { timeoutMs = 5000, intervalMs = 25, message = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await predicate();
    if (last) return last;
    if (Date.now() >= deadline) {
      throw new Error(`waitFor: ${message} not met within ${timeoutMs} ms (last value: ${JSON.stringify(last)})`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * Opens `url` in a fresh browser context (no cache or storage shared between tests).
 * `consoleMessages` and `pageErrors` collect what the page logged and threw, for assertions
 * and for failure messages.
 */
export async function openPage(browser, url, { waitUntil = 'load' } = {}) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const consoleMessages = [];
  const pageErrors = [];
  page.on('console', (m) => consoleMessages.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => pageErrors.push(String(e?.stack ?? e)));
  await page.goto(url, { waitUntil });
  return { page, context, consoleMessages, pageErrors, close: () => context.close() };
}

/**
 * Serves `pagePath` from one collector (`site`, origin A = http://127.0.0.1:PORT_A) and starts
 * a second one (`collector`, origin B = http://127.0.0.1:PORT_B) for the page to send to: a
 * different port is a different origin, so the page's requests are cross-origin as in
 * production. The page gets B's URL as `?collector=<url>` (plus `query`); it must read it
 * from `location.search`.
 *
 * Returns { site, collector, endpoint (B + '/batch/'), page, context, consoleMessages,
 * pageErrors, close() }.
 */
export async function openCrossOrigin(browser, pagePath, { query = {}, waitUntil = 'load' } = {}) {
  const site = await startCollector({ port: 0, host: '127.0.0.1' });
  const collector = await startCollector({ port: 0, host: '127.0.0.1' });
  try {
    const params = new URLSearchParams({ collector: collector.url, ...query });
    const opened = await openPage(browser, `${site.url}${pagePath}?${params}`, { waitUntil });
    return {
      ...opened,
      site,
      collector,
      endpoint: `${collector.url}/batch/`,
      async close() {
        await opened.close();
        await Promise.all([site.close(), collector.close()]);
      },
    };
  } catch (err) {
    await Promise.all([site.close(), collector.close()]);
    throw err;
  }
}

/** `openCrossOrigin`, then `fn(handles)`, then closes everything even when `fn` throws. */
export async function withCrossOrigin(browser, pagePath, fn, options = {}) {
  return runWith(await openCrossOrigin(browser, pagePath, options), fn);
}

/**
 * Opens `pagePath` with openCrossOrigin, waits until the page sets `window.spoolReady`, runs
 * `fn(handles)` and closes everything; a failure carries the page's errors and last console
 * lines.
 */
export async function withSpoolPage(browser, pagePath, fn) {
  return runOnSpoolPage(await openCrossOrigin(browser, pagePath), fn);
}

/** `fn(handles)`, then `handles.close()` even when `fn` throws: for any driver's handles. */
export async function runWith(handles, fn) {
  try {
    return await fn(handles);
  } finally {
    await handles.close();
  }
}

/**
 * Waits (up to `timeoutMs`) until the page of `handles` sets `window.spoolReady`, runs
 * `fn(handles)` and closes everything; a failure carries the page's errors and last console
 * lines. For any driver's handles.
 */
export async function runOnSpoolPage(handles, fn, { timeoutMs = 5000 } = {}) {
  return runWith(handles, async () => {
    try {
      await waitFor(() => handles.page.evaluate(() => window.spoolReady), { message: 'spool loaded', timeoutMs });
      return await fn(handles);
    } catch (err) {
      err.message += `\npage errors: ${handles.pageErrors.join('\n')}\nconsole: ${handles.consoleMessages.slice(-20).join('\n')}`;
      throw err;
    }
  });
}
