// Nothing lost when the tab navigates away or closes, in WebKit: the cases of close.test.mjs
// (close-cases.mjs, same assertions) but offline, run in Debian's WebKitGTK MiniBrowser driven
// by WebKitWebDriver (WebDriver classic) on a virtual display (webkit.mjs). WebKit is Safari's
// engine, and unlike Chromium and Firefox: every navigation fires `pagehide` with `persisted`
// true (the page goes into the back/forward cache, no-store or not), ordinary fetches started
// after `beforeunload` fail within milliseconds, keepalive requests do not settle in the page
// before `pagehide`, and it opens at most 6 HTTP/1.1 connections per host, so keepalive
// requests queued behind stalled ones delay the navigation itself. Closing a tab (WebDriver's
// Close Window) fires `visibilitychange` to hidden, then `pagehide` (not persisted), and no
// `beforeunload`.
//
// Kept small (the machine is shared): 1,000 and 3,000 events at 0 ms, 1,000 at 80 ms through
// the delaying proxy of firefox.mjs (no CDP in WebKit) for the navigation case, and 3,000
// behind a refusing collector. The offline case is not run: WebDriver classic cannot take a
// page offline.

import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser } from './webkit.mjs';
import { backForward, crossSite, navigation, refusing, tabClose } from './close-cases.mjs';

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

// Besides the shared checks: in WebKit a keepalive request sent at close has not settled when
// `pagehide` runs, so nothing held then is known delivered, and all of it must be in the stored
// copy: the next load takes in exactly what the page held at pagehide. (Without this, the case
// passes in WebKit with the stored copy turned off, when the requests sent at close happen to
// reach the collector.)
const measured = [];
for (const [n, latency] of [[1_000, 0], [3_000, 0], [1_000, 80]]) {
  test(`in WebKit, navigation with ${n} events held at ${latency} ms: every event arrives at close or from the next load, and what was held at pagehide is stored and taken in by the next load`, async () => {
    const { note, stats, repeats } = await navigation(browser, { n, latency, latencyVia: 'proxy', label: 'WebKit ' });
    const held = note.inFlight + note.queued;
    measured.push({ n, latency, held, repeats });
    assert.ok(held > 0, 'events were held at pagehide');
    assert.ok(note.copies.length > 0, 'a copy was stored at close');
    assert.equal(stats.restored, held, 'the next load took in every event held at pagehide');
  });
}

// DESIGN.md: repeats cost bytes, keep them under 10% of what was held. Not met here. The
// collector stalls from the start in these cases, so the page never has an answer from it:
// in WebKit nothing sent at close (keepalive fetch, sendBeacon) settles before pagehide, and
// with no answer ever seen spool cannot show the collector took any of it. So it is all stored
// too, and whatever of it reached the collector arrives again from the next load (at-least-once).
// With a collector that answered once before the page left, what the browser carries is left
// out of the copy and the repeats are 0 (BENCHMARKS.md, figure 7, "collector answered first").
// Measured in WebKitGTK 2.50.6: every event held repeats once (1,000 for 1,000, 3,000 for
// 3,000).
test('in WebKit, the navigation cases repeat under 10% of what was held at pagehide', {
  todo: 'spool: every event held repeats once from the next load: the collector never answered this page, so nothing sent at close can be shown to have arrived, and it is stored too',
}, () => {
  assert.ok(measured.length > 0, 'the navigation cases ran');
  for (const { n, latency, held, repeats } of measured) {
    assert.ok(repeats <= held / 10, `N=${n} at ${latency} ms: ${repeats} repeats for ${held} held at pagehide`);
  }
});

// WebKit keeps a page holding or awaiting a Web Lock in its back/forward cache, and rejects the
// promise of `navigator.locks.request` as it goes in ("AbortError: Promise was rejected because
// the browsing context is going away"). spool claims stored copies inside such a lock at load
// and a second later, and handles that rejection: the page sees no error from it.
//
// In the page shown again, the keepalive requests sent at its pagehide never settle: spool sends
// their events again after its request timeout (10 s), which these cases wait for (repeats
// close to what was held).
const GOING_AWAY = /unhandled rejection: Promise was rejected because the browsing context is going away/;

for (const [n, latency] of [[1_000, 0], [3_000, 0]]) {
  test(`in WebKit, cross-site navigation with ${n} events held at ${latency} ms: every event arrives at close or from the next load on the page's origin`, () =>
    crossSite(browser, { n, latency, latencyVia: 'proxy', label: 'WebKit ' }));
  test(`in WebKit, tab closed with ${n} events held at ${latency} ms: every event arrives at close or from the next load in a new tab`, () =>
    tabClose(browser, { n, latency, latencyVia: 'proxy', label: 'WebKit ' }));
  test(`in WebKit, back/forward with ${n} events held at ${latency} ms: the page shown again from the back/forward cache delivers every event`, async (t) => {
    const { fromCache, knownErrors } = await backForward(browser, { n, latency, latencyVia: 'proxy', label: 'WebKit ', knownError: GOING_AWAY });
    assert.ok(fromCache, 'WebKit showed the page again from its back/forward cache');
    await t.test('no unhandled rejection from the Web Lock spool requested', () => {
      assert.deepEqual(knownErrors, []);
    });
  });
}

test('in WebKit, 3,000 events held behind a collector answering 503 when the page navigates away: no beacon is counted delivered, and the next load delivers all of them', () =>
  refusing(browser, { n: 3_000, label: 'WebKit ' }));

test('in WebKit, offline', { skip: 'WebDriver classic cannot take a page offline (no network emulation in WebKitWebDriver)' }, () => {});
