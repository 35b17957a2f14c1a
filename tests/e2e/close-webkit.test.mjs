// Nothing lost when the tab navigates away, in WebKit: the navigation and refusing-collector
// cases of close.test.mjs (close-cases.mjs, same assertions), run in Debian's WebKitGTK
// MiniBrowser driven by WebKitWebDriver (WebDriver classic) on a virtual display (webkit.mjs).
// WebKit is Safari's engine, and unlike Chromium and Firefox: every close fires `pagehide`
// with `persisted` true, ordinary fetches started after `beforeunload` fail within
// milliseconds, keepalive requests do not settle in the page before `pagehide`, and it opens
// at most 6 HTTP/1.1 connections per host, so keepalive requests queued behind stalled ones
// delay the navigation itself.
//
// Kept small (the machine is shared): 1,000 and 3,000 events at 0 ms, 1,000 at 80 ms through
// the delaying proxy of firefox.mjs (no CDP in WebKit), and 3,000 behind a refusing collector.
// The offline case is not run: WebDriver classic cannot take a page offline.

import { test, after, before } from 'node:test';
import { launchBrowser } from './webkit.mjs';
import { navigation, refusing } from './close-cases.mjs';

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

for (const [n, latency] of [[1_000, 0], [3_000, 0], [1_000, 80]]) {
  test(`in WebKit, navigation with ${n} events held at ${latency} ms: every event arrives at close or from the next load`, () =>
    navigation(browser, { n, latency, latencyVia: 'proxy', label: 'WebKit ' }));
}

test('in WebKit, 3,000 events held behind a collector answering 503 when the page navigates away: no beacon is counted delivered, and the next load delivers all of them', () =>
  refusing(browser, { n: 3_000, label: 'WebKit ' }));

test('in WebKit, offline', { skip: 'WebDriver classic cannot take a page offline (no network emulation in WebKitWebDriver)' }, () => {});
