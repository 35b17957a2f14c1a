//! The end-to-end harness for Firefox: Debian's firefox-esr driven by puppeteer-core over
//! WebDriver BiDi (no geckodriver, no downloaded browser), behind the same face as harness.mjs
//! has for Chromium, so a test written against one runs against the other.
//!
//!   import * as chromium from './harness.mjs';
//!   import * as firefox from './firefox.mjs';
//!   for (const [name, h] of [['chromium', chromium], ['firefox', firefox]]) {
//!     test(`... (${name})`, async () => {
//!       const browser = await h.launchBrowser();          // ~2-3 s for Firefox: once per file
//!       await h.withSpoolPage(browser, '/tests/e2e/pages/exporter.html', async ({ page, context, collector }) => {
//!         await page.evaluate(() => ...);                  // as in Playwright
//!         await context.setOffline(true);                  // as in Playwright
//!         await page.goto(url);                            // navigation: pagehide fires
//!       });
//!       await browser.close();
//!     });
//!   }
//!
//! What `launchBrowser()` returns is a small adapter with the part of Playwright's Browser,
//! BrowserContext and Page that spool's tests use (listed at `FirefoxPage`), so harness.mjs's
//! functions that take a browser work on it unchanged. Exported here with harness.mjs's names
//! and results: launchBrowser, openPage, openCrossOrigin, withCrossOrigin, withSpoolPage
//! (the last three also take `{ latencyMs }`), startCollector, withCollector, waitFor; and
//! startLatencyProxy, closedPortUrl. The puppeteer objects stay reachable (`browser.puppeteer`,
//! `context.puppeteer`, `page.puppeteer`) for anything else. Checked in Firefox ESR 153:
//! `page.reload()` keeps localStorage; a second `context.newPage()` shares it (two tabs of one
//! origin); `page.close({ runBeforeUnload: true })` fires `pagehide` and a beacon sent there
//! arrives; `page.goto` elsewhere fires `beforeunload`, `pagehide`, `visibilitychange`.
//! Not here: `context.newCDPSession` (Chromium only; see Latency).
//!
//! Offline. WebDriver BiDi's `emulation.setNetworkConditions` with `{type: "offline"}` is what
//! puppeteer's `page.setOfflineMode(true)` sends when the browser speaks BiDi only (Firefox).
//! Firefox ESR 153 honours it for the tab's browsing context: `navigator.onLine` turns false,
//! `offline` fires, `fetch` rejects ("NetworkError when attempting to fetch resource."); after
//! `setOfflineMode(false)`, `online` fires and requests go again. `context.setOffline(bool)`
//! here does that for every page of the context, and for pages opened in it later, as
//! Playwright's does. (If a Firefox ever lacked it, the fallback is to point the page at a
//! port nobody listens on, see `closedPortUrl`; that fails requests but leaves
//! `navigator.onLine` true, so it is not the same test.)
//!
//! Latency. BiDi can emulate offline only: puppeteer throws UnsupportedOperation for
//! `emulateNetworkConditions` with a latency in Firefox, and there is no CDP. `startLatencyProxy`
//! puts a TCP proxy in front of a server that delays every chunk (and every close) by half the
//! round trip each way; `openCrossOrigin(browser, path, { latencyMs: 80 })` here serves the page
//! and the collector through one proxy each, so the page, its navigation and every batch see it.
//! Chromium's tests use CDP `Network.emulateNetworkConditions` for the same.

import net from 'node:net';
import puppeteer from 'puppeteer-core';
import {
  openPage,
  openCrossOrigin as openCrossOriginDirect,
  runOnSpoolPage,
  runWith,
  startCollector,
  waitFor,
  withCollector,
} from './harness.mjs';

export { openPage, startCollector, waitFor, withCollector };

export const FIREFOX_PATH = process.env.FIREFOX_PATH ?? '/usr/bin/firefox-esr';

/**
 * Launches headless firefox-esr over WebDriver BiDi. Close it with `browser.close()`.
 * `options` go to puppeteer's launch (e.g. `{ extraPrefsFirefox: {...} }`). puppeteer's own
 * Firefox preferences (no updates, telemetry or first-run pages) are kept as they are: with
 * them, `beforeunload`, `pagehide` and `visibilitychange` all fire at a navigation
 * (bench/PAGEHIDE.md measured with the same launch).
 */
export async function launchBrowser(options = {}) {
  const browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: FIREFOX_PATH,
    headless: true,
    ...options,
  });
  const version = await browser.version(); // "firefox/153.8.0"
  return new FirefoxBrowser(browser, version);
}

/** Playwright's Browser, as far as the tests use it. */
class FirefoxBrowser {
  constructor(browser, version) {
    this.puppeteer = browser;
    this._version = version;
  }

  /** "firefox/153.8.0" (synchronous, as Playwright's `browser.version()`). */
  version() {
    return this._version;
  }

  /** A fresh browser context: its own storage and cookies, as Playwright's `newContext()`. */
  async newContext() {
    return new FirefoxContext(await this.puppeteer.createBrowserContext());
  }

  close() {
    return this.puppeteer.close();
  }
}

/** Playwright's BrowserContext: newPage, pages, setOffline, close. */
class FirefoxContext {
  constructor(context) {
    this.puppeteer = context;
    this._pages = [];
    this._offline = false;
  }

  async newPage() {
    const page = new FirefoxPage(await this.puppeteer.newPage(), this);
    this._pages.push(page);
    if (this._offline) await page.puppeteer.setOfflineMode(true);
    return page;
  }

  pages() {
    return this._pages.filter((p) => !p.puppeteer.isClosed());
  }

  /**
   * Takes every page of this context offline (`true`) or back online (`false`), and pages
   * opened later too: BiDi `emulation.setNetworkConditions` per browsing context. The page
   * sees `navigator.onLine` change and the `offline` / `online` events.
   */
  async setOffline(offline) {
    this._offline = Boolean(offline);
    await Promise.all(this.pages().map((p) => p.puppeteer.setOfflineMode(this._offline)));
  }

  close() {
    return this.puppeteer.close().catch(() => {});
  }
}

/**
 * Playwright's Page over puppeteer's: `evaluate(fn, arg)`, `goto(url, { waitUntil, timeout })`,
 * `reload()`, `waitForFunction(fn, arg, { timeout, polling })` (Playwright's argument order),
 * `waitForURL(url)`, `waitForNavigation()`, `url()`, `on('console' | 'pageerror', fn)` (ConsoleMessage has
 * `type()` and `text()` in both), `close({ runBeforeUnload })`, `context()`, `isClosed()`.
 */
class FirefoxPage {
  constructor(page, context) {
    this.puppeteer = page;
    this._context = context;
  }

  context() {
    return this._context;
  }

  url() {
    return this.puppeteer.url();
  }

  evaluate(fn, arg) {
    return arguments.length > 1 ? this.puppeteer.evaluate(fn, arg) : this.puppeteer.evaluate(fn);
  }

  goto(url, { waitUntil = 'load', timeout = 30_000 } = {}) {
    return this.puppeteer.goto(url, { waitUntil: lifecycle(waitUntil), timeout });
  }

  reload({ waitUntil = 'load', timeout = 30_000 } = {}) {
    return this.puppeteer.reload({ waitUntil: lifecycle(waitUntil), timeout });
  }

  /**
   * Resolves once the page's URL matches `url` (a string, a RegExp or a predicate of the URL
   * string) and its document has loaded, as Playwright's `waitForURL` with `waitUntil: "load"`.
   */
  async waitForURL(url, { timeout = 30_000 } = {}) {
    const matches = (u) => (typeof url === 'function' ? url(u) : url instanceof RegExp ? url.test(u) : u === url);
    await waitFor(() => matches(this.url()), { timeoutMs: timeout, message: `URL ${url}` });
    await this.waitForFunction(() => document.readyState === 'complete', undefined, { timeout });
  }

  waitForNavigation({ waitUntil = 'load', timeout = 30_000 } = {}) {
    return this.puppeteer.waitForNavigation({ waitUntil: lifecycle(waitUntil), timeout });
  }

  /** Playwright's order: (fn, arg, options). Polls every 50 ms (rAF does not run in the background). */
  waitForFunction(fn, arg, { timeout = 30_000, polling = 50 } = {}) {
    return this.puppeteer.waitForFunction(fn, { timeout, polling: polling === 'raf' ? 50 : polling }, arg);
  }

  /**
   * As Playwright's `on`. Firefox reports a failed cross-origin request ("Cross-Origin Request
   * Blocked: ... (Reason: CORS request did not succeed)", e.g. any fetch while offline) as a
   * JavaScript error, which puppeteer emits as `pageerror`; Chromium logs it to the console.
   * Here it goes to `console` handlers as an error line, so `pageerror` means an uncaught
   * error or rejection in both browsers.
   */
  on(event, handler) {
    if (event === 'pageerror') {
      this.puppeteer.on('pageerror', (e) => {
        if (!isNetworkReport(e)) handler(e);
      });
    } else if (event === 'console') {
      this.puppeteer.on('console', handler);
      this.puppeteer.on('pageerror', (e) => {
        if (isNetworkReport(e)) handler({ type: () => 'error', text: () => String(e?.message ?? e) });
      });
    } else {
      this.puppeteer.on(event, handler);
    }
    return this;
  }

  close({ runBeforeUnload = false } = {}) {
    return this.puppeteer.close({ runBeforeUnload });
  }

  isClosed() {
    return this.puppeteer.isClosed();
  }

  /** This page alone offline or online (the context's `setOffline` does every page). */
  setOffline(offline) {
    return this.puppeteer.setOfflineMode(Boolean(offline));
  }
}

// Firefox's console report of a cross-origin request that failed at the network level.
function isNetworkReport(e) {
  return /^Cross-Origin Request Blocked:/.test(String(e?.message ?? e));
}

// Playwright's waitUntil names to puppeteer's.
function lifecycle(waitUntil) {
  return { load: 'load', domcontentloaded: 'domcontentloaded', networkidle: 'networkidle0', commit: 'domcontentloaded' }[waitUntil] ?? waitUntil;
}

/**
 * harness.mjs's openCrossOrigin (page on origin A, collector on origin B, `?collector=<B>`),
 * plus `latencyMs`: both origins are then reached through a delaying proxy each (half the
 * round trip each way), the page's `?collector=` names the proxied collector, and `endpoint`
 * is the proxied one. The proxies close with the handles.
 */
export async function openCrossOrigin(browser, pagePath, { query = {}, waitUntil = 'load', latencyMs = 0 } = {}) {
  if (!latencyMs) return openCrossOriginDirect(browser, pagePath, { query, waitUntil });
  const site = await startCollector({ port: 0, host: '127.0.0.1' });
  const collector = await startCollector({ port: 0, host: '127.0.0.1' });
  const proxies = [];
  const closeAll = () => Promise.all([...proxies.map((p) => p.close()), site.close(), collector.close()]);
  try {
    proxies.push(await startLatencyProxy(site.url, { rttMs: latencyMs }));
    proxies.push(await startLatencyProxy(collector.url, { rttMs: latencyMs }));
    const [siteUrl, collectorUrl] = proxies.map((p) => p.url);
    const params = new URLSearchParams({ collector: collectorUrl, ...query });
    const opened = await openPage(browser, `${siteUrl}${pagePath}?${params}`, { waitUntil });
    return {
      ...opened,
      site,
      collector,
      siteUrl,
      collectorUrl,
      endpoint: `${collectorUrl}/batch/`,
      async close() {
        await opened.close();
        await closeAll();
      },
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/** `openCrossOrigin`, then `fn(handles)`, then closes everything even when `fn` throws. */
export async function withCrossOrigin(browser, pagePath, fn, options = {}) {
  return runWith(await openCrossOrigin(browser, pagePath, options), fn);
}

/**
 * As harness.mjs's withSpoolPage (waits for `window.spoolReady`, failures carry the page's
 * errors and console), with this module's options (`latencyMs`, `query`).
 */
export async function withSpoolPage(browser, pagePath, fn, options = {}) {
  return runOnSpoolPage(await openCrossOrigin(browser, pagePath, options), fn, { timeoutMs: 15_000 });
}

/**
 * A TCP proxy on 127.0.0.1 in front of `targetUrl` (http://host:port) that delays every chunk
 * of bytes, and every end of a connection, by `rttMs / 2` in each direction: a link with that
 * round trip, which any browser sees the same way. Bytes a browser has written still arrive
 * after it gives up on the request, as on a real network. Returns { url, port, close() }.
 */
export async function startLatencyProxy(targetUrl, { rttMs }) {
  const target = new URL(targetUrl);
  const oneWay = rttMs / 2;
  const sockets = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    sockets.add(client).add(upstream);
    const later = (f) => setTimeout(f, oneWay);
    client.on('data', (d) => later(() => upstream.writable && upstream.write(d)));
    upstream.on('data', (d) => later(() => client.writable && client.write(d)));
    client.on('end', () => later(() => upstream.end()));
    upstream.on('end', () => later(() => client.end()));
    client.on('error', () => later(() => upstream.destroy()));
    upstream.on('error', () => later(() => client.destroy()));
    client.on('close', () => (sockets.delete(client), later(() => upstream.destroy())));
    upstream.on('close', () => sockets.delete(upstream));
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const port = server.address().port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * An http://127.0.0.1 URL on which nothing listens (a port taken and released at once): every
 * request to it fails with a connection refused, as a server that is down. Not offline:
 * `navigator.onLine` stays true.
 */
export async function closedPortUrl() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return `http://127.0.0.1:${port}`;
}
