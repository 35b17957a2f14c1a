// Nothing lost when the tab navigates away or the network drops, in Firefox ESR: the
// navigation and offline cases of close.test.mjs (close-cases.mjs, same assertions), run in
// Debian's firefox-esr driven by puppeteer-core over WebDriver BiDi (firefox.mjs). BiDi
// emulates offline but not latency, so the 80 ms cells put a delaying TCP proxy in front of
// the page's origin and the collector (firefox.mjs's startLatencyProxy): a real round trip,
// which the navigation itself sees too. Firefox's sendBeacon has no 64 KiB budget
// (bench/PAGEHIDE.md finding 4), so most of what is held leaves at pagehide; what the next
// load restores from localStorage covers the rest. Repeats may also come from the page itself,
// as in Chromium: spool gives up its ordinary requests as the navigation starts (Firefox would
// fail them, while the collector has their bodies) and sends those events again (bounded by
// what the collector saw abandoned).

import { test, after, before } from 'node:test';
import { launchBrowser } from './firefox.mjs';
import { navigation, offline, refusing, healthyBeacons } from './close-cases.mjs';

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

for (const n of [1_000, 3_000, 10_000]) {
  for (const latency of [0, 80]) {
    test(`in Firefox, navigation with ${n} events held at ${latency} ms: every event arrives at close or from the next load`, () =>
      navigation(browser, { n, latency, latencyVia: 'proxy', label: 'Firefox ' }));
  }
}

test('in Firefox, 3,000 events held behind a collector answering 503 when the page navigates away: no beacon is counted delivered, and the next load delivers all of them', () =>
  refusing(browser, { n: 3_000, label: 'Firefox ' }));

test('in Firefox, beacons the browser accepts while the collector answers count as delivered: none is stored and sent again by the next load', () =>
  healthyBeacons(browser, { n: 3_000, label: 'Firefox ' }));

test('in Firefox, offline: captures continue, nothing is spent against maxAttempts, and going online delivers everything', () =>
  offline(browser));
