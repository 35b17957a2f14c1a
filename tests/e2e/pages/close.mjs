// The page side of the page-close tests, with no test driver in it: a Playwright test
// (tests/e2e/close.test.mjs) and a puppeteer-core one (Firefox over WebDriver BiDi) both load
// close.html and call these through `window.closeTest` with their own `evaluate`.
//
// close.html?collector=<origin>&run=<tag>[&persist=0][&fast=1][&persistMaxBytes=B][&tab=T]
//           [&attempts=N][&backoff=MS][&timeout=MS][&compression=gzip|none]
//   - creates one Exporter for <collector>/batch/ (the same endpoint on every load, so the next
//     load finds what this one stored) with the default batching (`fast`: a 200 ms linger),
//     `persist` as asked;
//   - `capture(n)` captures n events of about 300 bytes (the test holds them in the exporter
//     by having the collector stall its answers: maxInFlight requests wait, the rest queue);
//   - at `pagehide` (after spool's own listener, which was added first) it notes in
//     localStorage how many events were still in flight: requests unanswered at unload, whose
//     events were also stored and may arrive twice (at-least-once); and the header line of
//     each copy spool stored. The same note, with `persisted` and the time, is kept in memory
//     (`hides`), and each `pageshow` after start (`shows`): a page restored from the
//     back/forward cache runs on, so no next load reads the stored one;
//   - `startedAt` is when this load's script began: nothing it sends arrives before then.

import init, { Exporter } from '/pkg/spool.js';

const NOTE = 'close-test:unload:' + (new URLSearchParams(location.search).get('tab') ?? '1');
const STARTED_AT = Date.now();

export async function start() {
  await init();
  const params = new URLSearchParams(location.search);
  const endpoint = (params.get('collector') ?? location.origin) + '/batch/';
  const persist = params.get('persist') !== '0';
  const exporter = new Exporter({
    endpoint,
    apiKey: 'phc_close_test',
    persist,
    ...(params.get('fast') === '1' ? { flushIntervalMs: 200 } : {}),
    ...(params.has('persistMaxBytes') ? { persistMaxBytes: Number(params.get('persistMaxBytes')) } : {}),
    ...(params.has('attempts') ? { maxAttempts: Number(params.get('attempts')) } : {}),
    ...(params.has('backoff') ? { initialBackoffMs: Number(params.get('backoff')), maxBackoffMs: Number(params.get('backoff')) } : {}),
    ...(params.has('compression') ? { compression: params.get('compression') } : {}),
    ...(params.has('timeout') ? { requestTimeoutMs: Number(params.get('timeout')) } : {}),
    maxQueueEvents: 100_000,
    maxQueueBytes: 64 << 20,
  });
  // The page's own notes tolerate a localStorage that throws (the bad-storage tests).
  const store = (f) => { try { return f(localStorage); } catch { return null; } };
  const previous = store((ls) => ls.getItem(NOTE));
  store((ls) => ls.removeItem(NOTE));
  const hides = [];
  const shows = [];
  addEventListener('pagehide', (e) => {
    // `busy`: the exporter refused the call (SpoolBusy), as it does when an earlier call of its
    // own never returned: Firefox may end a closing tab's script inside localStorage.setItem.
    let s = null;
    try { s = exporter.stats(); } catch (err) { if (err?.name !== 'SpoolBusy') throw err; }
    // The first line of each copy spool keeps (`spool3 <cut> <kept until>`), then `d` if it
    // begins with batches packed ahead (their lines deflated), `p` if its events are all plain.
    const copies = store((ls) => Object.keys(ls).filter((k) => k.startsWith('spool1:') && !k.endsWith(':claim')).map((k) => {
      const [head, first] = ls.getItem(k).split('\n', 2);
      return `${head} ${first?.[0] ?? ''}`;
    })) ?? [];
    const note = { inFlight: s?.inFlight, queued: s?.queued, restored: s?.restored, delivered: s?.delivered, dropped: s?.dropped, lastError: s?.lastError, busy: s === null, copies, persisted: e.persisted, visibility: document.visibilityState };
    store((ls) => ls.setItem(NOTE, JSON.stringify(note)));
    hides.push({ ...note, at: Date.now() });
  });
  addEventListener('pageshow', (e) => shows.push({ persisted: e.persisted, at: Date.now() }));
  const run = params.get('run') ?? 'run';
  window.closeTest = {
    exporter,
    /** The previous load's note at its pagehide, if any. */
    previous: previous && JSON.parse(previous),
    startedAt: STARTED_AT,
    /** This document's pagehide notes and pageshows, oldest first. */
    hides,
    shows,
    /** Captures n events; returns their uuids. */
    capture(n, from = 0) {
      const uuids = [];
      for (let i = from; i < from + n; i++) {
        uuids.push(exporter.capture('close_test', { run, i, path: '/checkout/step', plan: 'pro', amount: 42.5, note: 'x'.repeat(50) }));
      }
      return uuids;
    },
    /** The note of an earlier load stored after this one began (its pagehide ran late), if any. */
    late: () => JSON.parse(store((ls) => ls.getItem(NOTE)) ?? 'null'),
    stats: () => exporter.stats(),
    flush: () => exporter.flush(),
    /** The keys spool stored, with their lengths. */
    stored() {
      return store((ls) => {
        const out = {};
        for (let i = 0; i < ls.length; i++) {
          const k = ls.key(i);
          if (k.startsWith('spool1:')) out[k] = ls.getItem(k).length;
        }
        return out;
      });
    },
  };
  window.spoolReady = true;
}
