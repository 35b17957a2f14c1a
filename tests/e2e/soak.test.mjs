// A browser soak: rounds of events through one Exporter in a page, against a mildly faulty
// collector on another origin (a few 503s, dropped connections and lost acknowledgments), with
// the wasm linear memory measured before and after each round. Linear memory never shrinks,
// so a leak shows as growth in a later round doing the same work as the first; what is held
// at once is bounded by the queue limits, so after the first round it must stay put.
//
// SPOOL_SOAK_EVENTS sets the events per round (default 20,000; `make soak` runs 100,000).
// Needs `make build` first; `make test-e2e` does that.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, openCrossOrigin, waitFor } from './harness.mjs';

// The engine's bound on text handed out to be packed ahead (src/engine/page/pack.rs).
const PACK_TEXT_AT_ONCE = 384 * 1024;
// The largest batch a page cuts: one keepalive body (16 KiB) at the best ratio of JSON to
// gzip bytes it assumes (16), less an eighth (src/engine/page/pack.rs, PackRatio).
const LARGEST_BATCH = (16 * 1024 * 16 * 7) / 8;
const SETTLED_SLACK = PACK_TEXT_AT_ONCE + 4 * LARGEST_BATCH;

const PAGE = '/tests/e2e/pages/reliability.html';
const PER_ROUND = Number(process.env.SPOOL_SOAK_EVENTS ?? 20_000);
const ROUNDS = 2;
// Events captured in one task, then the page waits for a flush: a busy page's bursts. Held at
// once: at most one burst, the same in every round, so the rounds compare.
const BURST = 5000;
const WEIGHTS = { ok: 94, e503: 3, reset: 2, acceptThen500: 1 };
// A page of wasm memory is 64 KiB. Round 2 does the same work as round 1 with everything
// freed in between; the allocator may still place things differently, so one page of slack.
const WASM_PAGE = 64 * 1024;

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

/**
 * Runs in the page: `events` events in bursts, each captured in one task and then flushed (the
 * flush waits for the burst). Returns what the round delivered and dropped (from the stats), the
 * largest memory seen during it, and the stats after it.
 */
async function round({ events, burst }) {
  const exporter = window.soakExporter;
  const before = exporter.stats();
  let peak = wasmMemoryBytes();
  let maxHeld = 0;
  for (let done = 0; done < events; ) {
    for (const end = Math.min(events, done + burst); done < end; done++) {
      if (exporter.capture('soak', { i: done, path: '/soak', payload: 'x'.repeat(done % 200) }) === undefined) {
        throw new Error(`event ${done} refused: queue full`);
      }
    }
    const s = exporter.stats();
    maxHeld = Math.max(maxHeld, s.queued + s.inFlight);
    peak = Math.max(peak, wasmMemoryBytes());
    await exporter.flush();
    peak = Math.max(peak, wasmMemoryBytes());
  }
  const stats = exporter.stats();
  return {
    delivered: stats.delivered - before.delivered,
    dropped: stats.dropped.total - before.dropped.total,
    peak,
    maxHeld,
    after: wasmMemoryBytes(),
    stats,
  };
}

const ROUNDS_TEST = `soak: ${ROUNDS} rounds of ${PER_ROUND} events, all delivered, wasm memory flat after the first round`;

test(ROUNDS_TEST, { timeout: 30 * 60_000 }, async (t) => {
  const handles = await openCrossOrigin(browser, PAGE);
  try {
    const { page, collector } = handles;
    await waitFor(() => page.evaluate(() => window.spoolReady), { message: 'spool loaded' });
    collector.control.chaos({ seed: 7, weights: WEIGHTS });
    const initial = await page.evaluate(() => {
      window.soakExporter = new Exporter({ endpoint, apiKey: 'phc_test', initialBackoffMs: 50, maxBackoffMs: 500 });
      return wasmMemoryBytes();
    });
    const rounds = [];
    for (let r = 0; r < ROUNDS; r++) {
      rounds.push(await page.evaluate(round, { events: PER_ROUND, burst: BURST }));
    }
    const shutdown = await page.evaluate(() => window.soakExporter.shutdown({ timeoutMs: 30_000 }));

    const memory = [initial, ...rounds.map((r) => r.after)];
    const line =
      `soak memory (bytes): before ${initial}; ` +
      rounds.map((r, i) => `after round ${i + 1} ${r.after} (peak ${r.peak}, at most ${r.maxHeld} events held)`).join('; ');
    t.diagnostic(line);

    for (const [i, r] of rounds.entries()) {
      assert.deepEqual([r.delivered, r.dropped], [PER_ROUND, 0], `round ${i + 1}: every event delivered`);
      assert.equal(r.stats.queued + r.stats.inFlight, 0, `round ${i + 1}: nothing left held`);
    }
    assert.deepEqual(shutdown, { delivered: 0, dropped: 0, abandoned: 0 });
    const last = rounds.at(-1).stats;
    assert.equal(last.delivered, ROUNDS * PER_ROUND);
    assert.equal(last.dropped.total, 0);

    // The collector got every event (some twice: an acknowledgment lost is resent).
    const uuids = new Set();
    for (const b of collector.log().batches) if (b.accepted) for (const e of b.body.batch) uuids.add(e.uuid);
    assert.equal(uuids.size, ROUNDS * PER_ROUND, 'every event reached the collector');

    for (let i = 2; i < memory.length; i++) {
      assert.ok(
        memory[i] <= memory[1] + WASM_PAGE,
        `wasm memory grew from ${memory[1]} after round 1 to ${memory[i]} after round ${i}: a leak`,
      );
    }
  } catch (err) {
    err.message += `\npage errors: ${handles.pageErrors.join('\n')}\nconsole: ${handles.consoleMessages.slice(-20).join('\n')}`;
    throw err;
  } finally {
    await handles.close();
  }
});

// Linear memory is a high-water mark, and where it settles depends on timing: how many
// batches are out being packed, and how large, when the queue is full (bounded by
// PACK_TEXT_AT_ONCE). With 100-event batches it rose by up to three pages in the first five
// outages and at most one after the sixth (seven runs of 14); with batches cut to a keepalive
// body (up to LARGEST_BATCH of text) a CI run stepped by nine pages at the tenth (3.6 to 4.2
// MB), and another by 0.98 MB between the sixth and the eleventh. That the engine frees what
// an outage held is counted byte for byte natively (tests/memory.rs); here the second half of
// the outages must not grow memory by more than what is out at once (the text out to be
// packed and a body per request in flight, 1.3 MB), as a shell that kept two batches' bodies
// per outage would (2.6 MB over six).
const OUTAGES = 12;
const SETTLED_AFTER = OUTAGES / 2;

const OUTAGES_TEST =
  `soak: the queue filled to its limits in ${OUTAGES} outages: memory bounded by them and flat once settled, ` +
  'every overflow counted';

test(OUTAGES_TEST, { timeout: 10 * 60_000 }, async (t) => {
  const handles = await openCrossOrigin(browser, PAGE);
  try {
    const { page, collector } = handles;
    await waitFor(() => page.evaluate(() => window.spoolReady), { message: 'spool loaded' });
    const limits = { maxQueueEvents: 5000, maxQueueBytes: 1 << 20 };
    const initial = await page.evaluate((limits) => {
      // Retried through the outage, never exhausted.
      window.fullExporter = new Exporter({ endpoint, apiKey: 'phc_test', ...limits, maxAttempts: 100, initialBackoffMs: 50, maxBackoffMs: 200 });
      return wasmMemoryBytes();
    }, limits);
    const episodes = [];
    for (let episode = 0; episode < OUTAGES; episode++) {
      collector.control.plan([], { status: 503 });
      const filled = await page.evaluate(async (limits) => {
        const exporter = window.fullExporter;
        let refused = 0;
        let captured = 0;
        // Three times what the queue holds, in chunks, while the collector answers 503.
        for (let i = 0; i < 3 * limits.maxQueueEvents; i++) {
          const uuid = exporter.capture('outage', { i, payload: 'y'.repeat(100 + (i % 100)) });
          if (uuid === undefined) refused++;
          else captured++;
          if (i % 1000 === 999) await new Promise((r) => setTimeout(r, 0));
        }
        const s = exporter.stats();
        return { refused, captured, held: s.queued + s.inFlight, memory: wasmMemoryBytes(), stats: s };
      }, limits);
      collector.control.plan([], { status: 200 });
      const drained = await page.evaluate(async () => {
        const exporter = window.fullExporter;
        // Some may have been delivered already, since the collector recovered.
        const s = exporter.stats();
        const held = s.queued + s.inFlight;
        const report = await exporter.flush();
        return { held, report, memory: wasmMemoryBytes(), stats: exporter.stats() };
      });
      episodes.push({ ...filled, drained });
    }
    t.diagnostic(
      `soak, queue full (bytes): before ${initial}; ` +
        episodes
          .map((e, i) => `outage ${i + 1}: ${e.held} events held, ${e.refused} refused, ` +
            `memory ${e.memory} full, ${e.drained.memory} drained`)
          .join('; '),
    );
    let dropped = 0;
    let captured = 0;
    for (const [i, e] of episodes.entries()) {
      captured += e.captured;
      assert.ok(e.held <= limits.maxQueueEvents, `outage ${i + 1}: ${e.held} events held`);
      assert.ok(e.refused > 0, `outage ${i + 1}: the queue filled`);
      dropped += e.refused;
      assert.equal(e.stats.dropped.queueFull, dropped, `outage ${i + 1}: every refusal counted as queueFull`);
      assert.deepEqual(e.drained.report, { delivered: e.drained.held, dropped: 0 }, `outage ${i + 1}: what was held is delivered`);
      assert.equal(e.drained.stats.queued + e.drained.stats.inFlight, 0);
      assert.equal(e.drained.stats.delivered, captured, `outage ${i + 1}: every event taken in is delivered`);
    }
    for (const [i, e] of episodes.entries()) {
      // Held fragments are bounded by maxQueueBytes, and the allocator's slack by as much
      // again; the packs kept with their batches (a gzip body and a deflated copy each,
      // smaller than the text they pack) by as much again; the text out to be packed ahead by
      // PACK_TEXT_AT_ONCE; the bodies of the requests in flight by maxInFlight (4) batches of
      // at most LARGEST_BATCH. (A CI run reached 4.78 MB at the sixth outage, 0.2 MB over the
      // bound without the packs.)
      const bound = initial + 3 * limits.maxQueueBytes + PACK_TEXT_AT_ONCE + 4 * LARGEST_BATCH;
      assert.ok(
        Math.max(e.memory, e.drained.memory) <= bound,
        `outage ${i + 1}: wasm memory ${Math.max(e.memory, e.drained.memory)}, more than ${bound}`,
      );
    }
    const settled = episodes[SETTLED_AFTER - 1].drained.memory;
    for (let i = SETTLED_AFTER; i < episodes.length; i++) {
      assert.ok(
        episodes[i].drained.memory <= settled + SETTLED_SLACK,
        `wasm memory grew from ${settled} after outage ${SETTLED_AFTER} to ${episodes[i].drained.memory} after outage ${i + 1}`,
      );
    }
  } catch (err) {
    err.message += `\npage errors: ${handles.pageErrors.join('\n')}\nconsole: ${handles.consoleMessages.slice(-20).join('\n')}`;
    throw err;
  } finally {
    await handles.close();
  }
});
