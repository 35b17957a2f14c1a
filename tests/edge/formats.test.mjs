// The edge middleware in both wire formats, in workerd (miniflare, offline): PostHog's batch API
// against tools/collector.mjs's strict mode (the rules of PostHog's capture service), and OTLP
// logs against its /v1/logs, where the official protobuf bindings parse every body.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCollector, waitFor } from '../e2e/harness.mjs';
import { startWorker, wrappedWorker } from './workerd.mjs';

// /boom throws an error whose message is cut by the middleware (at 1,000 UTF-16 units)
// right between the two halves of an emoji.
const HANDLER = `{ async fetch(request) {
  if (new URL(request.url).pathname === "/boom") throw new Error("x".repeat(999) + "\\u{1F600}");
  return new Response("ok");
} }`;

let collector;
before(async () => {
  collector = await startCollector({ port: 0, host: '127.0.0.1' });
});
after(async () => {
  await collector?.close();
});

// The Worker records the Content-Encoding of each request it makes (wrapping the global fetch
// the wasm calls), served at /__encodings.
const RECORDER = `
const encodings = [];
const original = globalThis.fetch.bind(globalThis);
globalThis.fetch = (url, init) => {
  if (init?.headers) encodings.push(new Headers(init.headers).get("Content-Encoding"));
  return original(url, init);
};
`;

/** Runs `paths` through a Worker with `options`; returns the collector's batches and the
 *  Content-Encoding the Worker gave each request. */
async function run(options, bindings, paths) {
  collector.control.reset();
  const source = wrappedWorker(HANDLER, { flushIntervalMs: 50, ...options })
    .replace('export default withTelemetry(', `${RECORDER}\nconst app = withTelemetry(`)
    + `
export default {
  fetch: (request, env, ctx) =>
    new URL(request.url).pathname == "/__encodings" ? Response.json(encodings) : app.fetch(request, env, ctx),
};`;
  const { worker } = await startWorker(source, bindings);
  try {
    for (const p of paths) await (await worker.dispatchFetch(`https://shop.example${p}`)).text().catch(() => {});
    await waitFor(() => collector.log().batches.reduce((n, b) => n + (b.status === 200 ? b.events : 0), 0) >= paths.length, {
      timeoutMs: 10_000,
      message: `${paths.length} events delivered`,
    });
    const encodings = await (await worker.dispatchFetch('https://shop.example/__encodings')).json();
    return Object.assign(collector.log().batches, { encodings });
  } finally {
    await worker.dispose();
  }
}

test('PostHog format: the strict collector takes every request\'s event, an error cut before an emoji\'s second half included', async () => {
  const batches = await run({}, { SPOOL_ENDPOINT: `${collector.url}/strict/batch/`, SPOOL_API_KEY: 'phc_edge' }, ['/a', '/boom', '/b']);
  assert.ok(batches.every((b) => b.status === 200), JSON.stringify(batches.map((b) => b.refused)));
  assert.ok(batches.every((b) => b.gzip), 'gzipped: PostHog reads the magic bytes');
  assert.deepEqual(batches.encodings, batches.map(() => null), 'no Content-Encoding header: CORS-simple, as in a page');
  const events = batches.flatMap((b) => b.body.batch);
  assert.deepEqual(events.map((e) => e.properties.path).sort(), ['/a', '/b', '/boom']);
  const boom = events.find((e) => e.properties.path === '/boom');
  assert.equal(boom.properties.status, 500);
  assert.equal(boom.properties.error, 'x'.repeat(999), 'cut before the pair, not inside it');
});

test('OTLP format: every request is a LogRecord the official protobuf parser takes', async () => {
  const batches = await run(
    { format: 'otlp', serviceName: 'shop-edge' },
    { SPOOL_ENDPOINT: `${collector.url}/v1/logs` },
    ['/a', '/boom', '/b'],
  );
  assert.ok(batches.every((b) => b.status === 200 && b.path === '/v1/logs'), JSON.stringify(batches.map((b) => b.refused)));
  assert.ok(batches.every((b) => b.gzip), 'gzipped');
  assert.deepEqual(batches.encodings, batches.map(() => 'gzip'), 'OTLP says Content-Encoding: gzip');
  const records = batches.flatMap((b) => {
    const rl = b.otlp.resourceLogs[0];
    assert.deepEqual(rl.resource.attributes[0], { key: 'service.name', value: { stringValue: 'shop-edge' } });
    return rl.scopeLogs[0].logRecords;
  });
  const attrs = (r) => Object.fromEntries(r.attributes.map((a) => [a.key, a.value]));
  const byPath = new Map(records.map((r) => [attrs(r).path.stringValue, r]));
  assert.deepEqual([...byPath.keys()].sort(), ['/a', '/b', '/boom']);
  for (const r of records) {
    assert.equal(r.eventName, 'http_request');
    assert.match(r.timeUnixNano, /^\d{19}$/);
    assert.ok(attrs(r)['log.record.uid'].stringValue);
    assert.ok(attrs(r)['user.id'].stringValue);
    assert.deepEqual(attrs(r).method, { stringValue: 'GET' });
  }
  const boom = attrs(byPath.get('/boom'));
  assert.deepEqual(boom.status, { intValue: '500' });
  assert.deepEqual(boom.error, { stringValue: 'x'.repeat(999) });
  assert.deepEqual(attrs(byPath.get('/a')).status, { intValue: '200' });
});
