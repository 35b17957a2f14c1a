//! Where a contender's main-thread time goes: Chrome's sampling profiler (the DevTools
//! Protocol's `Profiler` domain) over one capture loop on the benchmark page, self time summed
//! per function, printed as ms and µs per event.
//!
//!   node bench/profile.mjs spool-linger 100000            captures only
//!   node bench/profile.mjs spool-linger 10000 --flush     captures, then flush() (whole path)
//!   node bench/profile.mjs posthog 5000 --wait            captures, then wait for delivery
//!   options: --stall (the collector never answers: nothing is sent beyond maxInFlight)
//!            --options '{"maxInFlight":1}' (merged into the contender's config)
//!            --root DIR (serve another build: DIR/pkg and DIR/bench/pages)
//!
//! Contenders are those of figure 1: floor, spool-linger, spool-auto, spool-off, posthog. For
//! wasm function names, profile a build that keeps its name section, e.g.
//!   cargo build --release --target wasm32-unknown-unknown
//!   wasm-bindgen --target web --out-dir DIR/pkg target/wasm32-unknown-unknown/release/spool.wasm
//!   wasm-opt -Oz -g DIR/pkg/spool_bg.wasm -o DIR/pkg/spool_bg.wasm
//! with bench/pages (and node_modules, for posthog) copied or linked under DIR.

import { fileURLToPath } from 'node:url';
import { launchBrowser, startCollector } from '../tests/e2e/harness.mjs';
import { openContender, CAPTURE_CONTENDERS, Tally } from './browser.mjs';

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const [id = 'spool-linger', events = '100000'] = args.filter((a, i) => !a.startsWith('--') && !args[i - 1]?.match(/^--(options|root|top)$/));
const n = Number(events);
const base = CAPTURE_CONTENDERS.find((c) => c.id === id);
if (!base) throw new Error(`unknown contender ${id}: one of ${CAPTURE_CONTENDERS.map((c) => c.id).join(', ')}`);
const root = opt('root', fileURLToPath(new URL('..', import.meta.url)));
const top = Number(opt('top', 30));

const collector = await startCollector({ port: 0, host: '127.0.0.1', root });
const browser = await launchBrowser();
try {
  if (args.includes('--stall')) collector.control.plan([], { status: 200, delayMs: 600_000 });
  const contender = { ...base, options: { ...base.options, ...JSON.parse(opt('options', '{}')) } };
  const h = await openContender(browser, collector, contender);
  // Compiled and warm before the profile starts.
  await h.page.evaluate(() => window.bench.captureLoop({ n: 2000, start: -2000 }));
  const tally = new Tally(collector);
  await h.cdp.send('Profiler.enable');
  await h.cdp.send('Profiler.setSamplingInterval', { interval: 50 });
  await h.cdp.send('Profiler.start');
  const loop = await h.page.evaluate((k) => window.bench.captureLoop({ n: k }), n);
  if (args.includes('--flush')) await h.page.evaluate(() => window.bench.flush());
  if (args.includes('--wait')) await tally.waitFor(h.apiKey, n + 2000, 60_000);
  const { profile } = await h.cdp.send('Profiler.stop');
  await h.close();

  const nodes = new Map(profile.nodes.map((x) => [x.id, x]));
  const self = new Map();
  let total = 0;
  profile.samples.forEach((sample, i) => {
    const { functionName, url, lineNumber } = nodes.get(sample).callFrame;
    const key = `${functionName || '(anonymous)'}  ${url ? `${url.split('/').pop()}:${lineNumber + 1}` : ''}`;
    const us = profile.timeDeltas[i] ?? 0;
    self.set(key, (self.get(key) ?? 0) + us);
    total += us;
  });
  const idle = [...self].filter(([k]) => k.startsWith('(idle)')).reduce((s, [, v]) => s + v, 0);
  console.log(
    `${id}, ${n.toLocaleString('en-US')} captures: ${((loop.totalMs * 1000) / n).toFixed(2)} µs/event inside the loop; ` +
      `profiled ${(total / 1000).toFixed(0)} ms, busy ${((total - idle) / 1000).toFixed(0)} ms = ${((total - idle) / n).toFixed(2)} µs/event`,
  );
  console.log('    self ms   µs/event  function');
  for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${(v / 1000).toFixed(1).padStart(11)} ${(v / n).toFixed(3).padStart(10)}  ${k}`);
  }
} finally {
  await browser.close();
  await collector.close();
}
