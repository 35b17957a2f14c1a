// One Retry-After hold per endpoint: the request that leads each batch window has an exporter
// of its own, and a Retry-After answered to one of them holds back the others too (workerd
// through miniflare, offline, against tools/collector.mjs). Needs the built pkg/ (make build).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCollector, waitFor } from '../e2e/harness.mjs';
import { startWorker, wrappedWorker } from './workerd.mjs';

const HANDLER = `{ async fetch(request) { return new Response("ok"); } }`;

let collector;
let worker;
let log;
before(async () => {
  collector = await startCollector({ port: 0, host: '127.0.0.1' });
  // debug: the Worker logs each outcome it takes, so the test knows when it has the 429.
  ({ worker, log } = await startWorker(wrappedWorker(HANDLER, { debug: true, apiKey: 'phc_test' }), {
    SPOOL_ENDPOINT: `${collector.url}/batch/`,
  }));
});
after(async () => {
  await worker?.dispose();
  await collector?.close();
  assert.doesNotMatch(log?.text() ?? '', /different request|Cannot perform I\/O/);
});

const pathOf = (entry) => entry.body?.batch?.[0]?.properties?.path;

test("a Retry-After answered to one request's event holds back another request's event", async () => {
  collector.control.reset();
  collector.control.plan([{ status: 429, retryAfter: '2' }], { status: 200 });

  // Request A: its event is answered 429 with Retry-After: 2, and A's delivery waits in its
  // waitUntil.
  assert.equal(await (await worker.dispatchFetch('https://shop.example/a')).text(), 'ok');
  await waitFor(() => /spool: outcome.*429/.test(log.text()), { message: "the Worker took A's 429" });
  const [first] = collector.log().batches;
  assert.equal(pathOf(first), '/a');
  assert.equal(first.status, 429);
  const until = first.retryAfterUntil;
  assert.ok(until >= first.answeredAt + 2000, `the hold: ${until}`);

  // Request B, while A's delivery still waits: B's exporter is new, and has never been
  // answered, but must not send before the time A's answer named.
  assert.equal(await (await worker.dispatchFetch('https://shop.example/b')).text(), 'ok');
  const accepted = () => collector.log().batches.filter((b) => b.accepted);
  await waitFor(() => accepted().length >= 2, { timeoutMs: 10_000, message: 'both events delivered' });
  await new Promise((r) => setTimeout(r, 300)); // a duplicate would arrive meanwhile

  const batches = collector.log().batches;
  const b = batches.filter((e) => pathOf(e) == '/b');
  assert.equal(b.length, 1, "B's event is sent once, after the hold");
  assert.ok(b[0].receivedAt >= until, `B's event arrived ${until - b[0].receivedAt} ms before the Retry-After deadline`);
  const a = batches.filter((e) => pathOf(e) == '/a');
  assert.deepEqual(a.map((e) => e.status), [429, 200]);
  assert.ok(a[1].receivedAt >= until, "A's retry waits too");
  assert.deepEqual(accepted().map(pathOf).sort(), ['/a', '/b'], 'both delivered, each once');
  assert.doesNotMatch(log.text(), /was not delivered/);
});
