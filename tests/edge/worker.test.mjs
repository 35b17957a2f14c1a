// The edge middleware in workerd, offline: the example Worker (examples/worker/index.js)
// bundled by `wrangler deploy --dry-run` exactly as it would be uploaded, run by miniflare,
// sending to tools/collector.mjs on 127.0.0.1. Needs the built pkg/ (make build).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Miniflare } from 'miniflare';
import { startCollector, waitFor } from '../e2e/harness.mjs';
import { ROOT, compatibilityDate, runtimeLog } from './workerd.mjs';

const WRANGLER = path.join(ROOT, 'node_modules', 'wrangler', 'bin', 'wrangler.js');
const API_KEY = 'phc_edge_example_key';
// Every request goes to this origin; miniflare hands it to the Worker unchanged.
const ORIGIN = 'https://shop.example';

let collector;
let worker;
let log;
let bundle;

before(async () => {
  bundle = await fs.mkdtemp(path.join(os.tmpdir(), 'spool-edge-'));
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [WRANGLER, 'deploy', '--dry-run', '--outdir', bundle],
    { cwd: ROOT, env: { ...process.env, WRANGLER_SEND_METRICS: 'false', NO_COLOR: '1', CI: '1' } },
  );
  const upload = stdout.match(/Total Upload: .*/)?.[0];
  assert.ok(upload, `wrangler printed no upload size:\n${stdout}`);
  console.log(`wrangler deploy --dry-run: ${upload}`);

  collector = await startCollector({ port: 0, host: '127.0.0.1' });
  log = runtimeLog();
  worker = new Miniflare({
    modules: true,
    scriptPath: path.join(bundle, 'index.js'),
    modulesRoot: bundle,
    modulesRules: [{ type: 'CompiledWasm', include: ['**/*.wasm'] }],
    compatibilityDate: await compatibilityDate(),
    bindings: { SPOOL_ENDPOINT: `${collector.url}/batch/`, SPOOL_API_KEY: API_KEY },
    // No download of Cloudflare's request.cf data: a fixed stand-in (country US, colo DFW).
    cf: false,
    handleRuntimeStdio: log.attach,
  });
  await worker.ready.catch((e) => {
    throw new Error(`workerd did not start: ${e.message}\n${log.text()}`);
  });
});

after(async () => {
  await worker?.dispose();
  await collector?.close();
  if (bundle) await fs.rm(bundle, { recursive: true, force: true });
  // Whatever a test did, workerd never saw I/O shared between requests.
  assert.doesNotMatch(log.text(), /different request|Cannot perform I\/O/);
});

/** Every event the collector holds from accepted batches, in arrival order. */
function delivered() {
  return collector.log().batches.filter((b) => b.accepted).flatMap((b) => b.body.batch);
}

/** Dispatches `urls` (or [url, init] pairs) `width` at a time; resolves to [{status, ms}]. */
async function dispatchAll(requests, width = 25) {
  const results = [];
  for (let i = 0; i < requests.length; i += width) {
    const slice = requests.slice(i, i + width).map(async (r) => {
      const [url, init] = Array.isArray(r) ? r : [r];
      const started = performance.now();
      const response = await worker.dispatchFetch(url, init);
      const body = await response.text();
      return { status: response.status, body, ms: performance.now() - started };
    });
    results.push(...(await Promise.all(slice)));
  }
  return results;
}

test('the example Worker serves 200 requests and the collector receives each one http_request event once', async () => {
  collector.control.reset();
  const requests = Array.from({ length: 200 }, (_, i) =>
    i % 4 == 3 ? [`${ORIGIN}/items/${i}`, { method: 'POST', body: 'x' }] : `${ORIGIN}/items/${i}`,
  );
  const results = await dispatchAll(requests);
  assert.deepEqual(results.map((r) => r.status), Array(200).fill(200));

  const events = await waitFor(() => delivered().length >= 200 && delivered(), {
    timeoutMs: 20_000,
    message: '200 events delivered',
  });
  await new Promise((r) => setTimeout(r, 300)); // a duplicate would arrive meanwhile
  assert.equal(delivered().length, 200, 'each event once');
  assert.equal(new Set(events.map((e) => e.uuid)).size, 200, 'uuids unique');
  const byPath = new Map(events.map((e) => [e.properties.path, e]));
  assert.equal(byPath.size, 200, 'one event per request path');
  for (let i = 0; i < 200; i++) {
    const e = byPath.get(`/items/${i}`);
    assert.ok(e, `event for /items/${i}`);
    assert.equal(e.event, 'http_request');
    assert.equal(e.properties.method, i % 4 == 3 ? 'POST' : 'GET');
    assert.equal(e.properties.status, 200);
    assert.equal(e.properties.host, 'shop.example');
    assert.ok(Number.isInteger(e.properties.duration_ms) && e.properties.duration_ms >= 0
      && e.properties.duration_ms < 5000, `plausible duration_ms: ${e.properties.duration_ms}`);
    assert.equal(e.properties.country, 'US');
    assert.equal(e.properties.colo, 'DFW');
  }
  assert.ok(collector.log().batches.every((b) => b.body.api_key === API_KEY), 'the key from env');
  assert.ok(collector.log().batches.every((b) => b.gzip && b.contentType == 'text/plain;charset=UTF-8'),
    'bodies gzipped as a page gzips its ordinary ones: PostHog reads the magic bytes, no header');
  assert.equal(new Set(events.map((e) => e.distinct_id)).size, 1, "one distinct id for the isolate's events");
});

test('duration_ms measures the time the handler spent waiting', async () => {
  collector.control.reset();
  const [result] = await dispatchAll([`${ORIGIN}/wait?ms=120`]);
  assert.equal(result.status, 200);
  const [event] = await waitFor(() => delivered().length == 1 && delivered(), { message: 'the event' });
  assert.equal(event.properties.path, '/wait');
  assert.ok(event.properties.duration_ms >= 120 && event.properties.duration_ms < 2000,
    `duration_ms ${event.properties.duration_ms}`);
  // The capture time is the request's arrival, before the wait.
  assert.ok(Date.parse(event.timestamp) <= Date.parse(collector.log().batches[0].sentAt) - 120);
});

test('query strings, cookies and other headers are not recorded by default', async () => {
  collector.control.reset();
  const [result] = await dispatchAll([[`${ORIGIN}/items/q?token=s3cr3t&email=a%40b.example`, {
    headers: { cookie: 'session=c00k1e', authorization: 'Bearer t0k3n', 'user-agent': 'probe/1' },
  }]]);
  assert.equal(result.status, 200);
  await waitFor(() => delivered().length == 1, { message: 'the event' });
  const [batch] = collector.log().batches;
  const [event] = batch.body.batch;
  assert.equal(event.properties.path, '/items/q');
  assert.deepEqual(Object.keys(event.properties).sort(),
    ['colo', 'country', 'duration_ms', 'host', 'method', 'path', 'status']);
  for (const secret of ['s3cr3t', 'a%40b', 'c00k1e', 't0k3n', 'probe/1']) {
    assert.ok(!JSON.stringify(batch.body).includes(secret), `${secret} is not sent`);
  }
});

test('responses do not wait for a collector that answers after 2 s; its late answers are acted on', async () => {
  collector.control.reset();
  // Every answer takes 2 s, and the first is a 503: only a delivery still alive 2 s after the
  // responses (inside waitUntil) reads it and sends the retry that succeeds.
  collector.control.plan([{ status: 503, delayMs: 2000, times: 1 }], { status: 200, delayMs: 2000 });
  const results = await dispatchAll(Array.from({ length: 10 }, (_, i) => `${ORIGIN}/items/slow-${i}`));
  const times = results.map((r) => r.ms).sort((a, b) => a - b);
  console.log(`response latency with a collector answering in 2 s: median ${times[5].toFixed(0)} ms, ` +
    `max ${times[9].toFixed(0)} ms`);
  assert.deepEqual(results.map((r) => r.status), Array(10).fill(200));
  assert.ok(times[9] < 500, `every response well under 2 s (slowest ${times[9].toFixed(0)} ms)`);
  await waitFor(() => delivered().length == 10, { timeoutMs: 15_000, message: '10 events delivered' });
  // The 10 requests came within one batching window: one batch, a slow 503, then a slow 200.
  const batches = collector.log().batches;
  assert.deepEqual(batches.map((b) => [b.status, b.body.batch.length]), [[503, 10], [200, 10]]);
  assert.equal(new Set(delivered().map((e) => e.uuid)).size, 10);
  collector.control.reset();
});

test('a handler that throws: the client gets the runtime error response, the collector a status-500 event', async () => {
  collector.control.reset();
  const [result] = await dispatchAll([`${ORIGIN}/boom`]);
  assert.equal(result.status, 500);
  assert.match(result.body, /boom: the example handler failed/, 'the error is rethrown unchanged');
  const [event] = await waitFor(() => delivered().length == 1 && delivered(), { message: 'the event' });
  assert.equal(event.properties.path, '/boom');
  assert.equal(event.properties.status, 500);
  assert.equal(event.properties.error, 'boom: the example handler failed');
});

test('a 429 with Retry-After: 2 is retried within waitUntil after 2 s and delivered', async () => {
  collector.control.reset();
  collector.control.plan([{ status: 429, retryAfter: '2', times: 1 }], { status: 200 });
  const results = await dispatchAll([0, 1, 2].map((i) => `${ORIGIN}/items/retry-${i}`));
  assert.ok(results.every((r) => r.status == 200 && r.ms < 500), JSON.stringify(results.map((r) => r.ms)));
  await waitFor(() => delivered().length == 3, { timeoutMs: 10_000, message: '3 events delivered after a 429' });
  // One batch of the 3 events (one window): a 429, then one retry.
  const attempts = collector.log().batches;
  assert.deepEqual(attempts.map((b) => b.status), [429, 200]);
  const [first, retry] = attempts;
  const paths = (b) => b.body.batch.map((e) => e.properties.path).sort();
  assert.deepEqual(paths(first), ['/items/retry-0', '/items/retry-1', '/items/retry-2']);
  assert.deepEqual(retry.body.batch.map((e) => e.uuid), first.body.batch.map((e) => e.uuid), 'the same events');
  assert.ok(retry.receivedAt - first.answeredAt >= 1990, `not before Retry-After: ${retry.receivedAt - first.answeredAt} ms`);
  assert.ok(Date.parse(retry.sentAt) > Date.parse(first.sentAt), 'sent_at stamped per attempt');
  assert.equal(delivered().length, 3);
});

test('the API key appears in no log line', () => {
  assert.ok(!log.text().includes(API_KEY));
});
