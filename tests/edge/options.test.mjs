// withTelemetry's options: checked when the Worker module loads (here in Node, which loads the
// package the same way), and their effect on a Worker in workerd (miniflare, offline).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { startCollector, waitFor } from '../e2e/harness.mjs';
import { ROOT, startWorker, wrappedWorker } from './workerd.mjs';
import { initSync, withTelemetry } from '../../pkg/edge.js';

const HANDLER = `{ async fetch(request) { return new Response("ok"); } }`;
const app = { fetch: () => new Response('ok') };

let collector;
before(async () => {
  initSync({ module: await fs.readFile(path.join(ROOT, 'pkg', 'spool_edge_bg.wasm')) });
  collector = await startCollector({ port: 0, host: '127.0.0.1' });
});
after(async () => {
  await collector?.close();
});

function delivered() {
  return collector.log().batches.filter((b) => b.accepted).flatMap((b) => b.body.batch);
}

/** Runs `fn({ worker, log })` against a Worker wrapping HANDLER with `options`. */
async function withWorker(options, fn, bindings = { SPOOL_ENDPOINT: `${collector.url}/batch/`, SPOOL_API_KEY: 'phc_test' }) {
  collector.control.reset();
  const { worker, log } = await startWorker(wrappedWorker(HANDLER, options), bindings);
  try {
    return await fn({ worker, log });
  } finally {
    await worker.dispose();
    collector.control.reset();
  }
}

test('an invalid option throws a SpoolConfigError naming the field', () => {
  const cases = [
    [{ deadlineMs: 50 }, 'deadlineMs', /from 100 to 30000 \(got 50\)/],
    [{ deadlineMs: 60_000 }, 'deadlineMs', /got 60000/],
    [{ deadlineMs: 29_500 }, 'deadlineMs', /at most 29000 \(got 29500\)/],
    [{ deadlineMs: '5000' }, 'deadlineMs', /number/],
    [{ subrequestLimit: 0 }, 'subrequestLimit', /from 1 to 1000 \(got 0\)/],
    [{ subrequestLimit: 2.5 }, 'subrequestLimit', /got 2.5/],
    [{ eventName: '' }, 'eventName', /empty/],
    [{ eventName: 7 }, 'eventName', /string/],
    [{ captureQuery: 'yes' }, 'captureQuery', /true or false/],
    [{ captureHeaders: 'user-agent' }, 'captureHeaders', /array of header names/],
    [{ captureHeaders: true }, 'captureHeaders', /array of header names/],
    [{ captureHeaders: ['user agent'] }, 'captureHeaders', /./],
    [{ maxAttempts: 0 }, 'maxAttempts', /from 1 to 100/],
    [{ endpoint: 'ftp://collector.example/' }, 'endpoint', /http/],
    ['fast', 'options', /object/],
  ];
  for (const [options, field, message] of cases) {
    assert.throws(() => withTelemetry(app, options), (e) => {
      assert.equal(e.name, 'SpoolConfigError', JSON.stringify(options));
      assert.equal(e.field, field, JSON.stringify(options));
      assert.match(e.message, /^spool: /);
      assert.match(e.message, message);
      return true;
    });
  }
});

test('the API key is in no config error', () => {
  assert.throws(() => withTelemetry(app, { apiKey: 'phc_do_not_print', maxAttempts: 0 }), (e) => {
    assert.ok(!e.message.includes('phc_do_not_print'), e.message);
    return true;
  });
});

test('a handler without fetch is a TypeError; other handlers are kept', () => {
  assert.throws(() => withTelemetry({}), TypeError);
  assert.throws(() => withTelemetry(undefined), TypeError);
  const scheduled = () => {};
  const wrapped = withTelemetry({ fetch: () => new Response('ok'), scheduled }, { endpoint: 'https://c.example/batch/', apiKey: 'phc_test' });
  assert.equal(typeof wrapped.fetch, 'function');
  assert.equal(wrapped.scheduled, scheduled);
});

test('the package types withTelemetry and its options', async () => {
  const dts = await fs.readFile(path.join(ROOT, 'pkg', 'edge.d.ts'), 'utf8');
  assert.match(dts, /export function withTelemetry<H extends FetchHandler>\(handler: H, options\?: EdgeOptions\): H;/);
  for (const key of ['eventName', 'captureQuery', 'captureHeaders', 'deadlineMs', 'subrequestLimit']) {
    assert.match(dts, new RegExp(`\\b${key}\\?:`), key);
  }
});

test('opted in: the query string and the listed headers are recorded, under the configured name', async () => {
  const options = { captureQuery: true, captureHeaders: ['User-Agent', 'x-trace', 'x-absent'], eventName: 'edge_hit' };
  await withWorker(options, async ({ worker }) => {
    const response = await worker.dispatchFetch('https://shop.example/search?q=boots&page=2', {
      headers: { 'user-agent': 'probe/1', 'x-trace': 't-1', cookie: 'session=c00k1e' },
      cf: { country: 'NL', colo: 'AMS' },
    });
    assert.equal(await response.text(), 'ok');
    const [event] = await waitFor(() => delivered().length == 1 && delivered(), { message: 'the event' });
    assert.equal(event.event, 'edge_hit');
    assert.equal(event.properties.path, '/search');
    assert.equal(event.properties.query, 'q=boots&page=2');
    assert.deepEqual(event.properties.headers, { 'user-agent': 'probe/1', 'x-trace': 't-1' });
    assert.equal(event.properties.country, 'NL');
    assert.equal(event.properties.colo, 'AMS');
    assert.ok(!JSON.stringify(event).includes('c00k1e'), 'an unlisted header (the cookie) stays out');
  });
});

test('batching: one window, one collector request; in auto mode, each request its own at once', async () => {
  await withWorker({ flushIntervalMs: 300 }, async ({ worker }) => {
    const started = Date.now();
    await Promise.all([0, 1, 2, 3].map(async (i) => (await worker.dispatchFetch(`https://shop.example/w/${i}`)).text()));
    await waitFor(() => delivered().length == 4, { message: 'the window\'s 4 events' });
    assert.ok(Date.now() - started >= 290, 'sent when the window closed');
    assert.deepEqual(collector.log().batches.map((b) => b.body.batch.length), [4]);
    // A request after the window opens the next one.
    await (await worker.dispatchFetch('https://shop.example/w/4')).text();
    await waitFor(() => delivered().length == 5, { message: 'the next window\'s event' });
    assert.deepEqual(collector.log().batches.map((b) => b.body.batch.length), [4, 1]);
  });
  await withWorker({ batchMode: 'auto' }, async ({ worker }) => {
    const started = Date.now();
    await Promise.all([0, 1, 2].map(async (i) => (await worker.dispatchFetch(`https://shop.example/a/${i}`)).text()));
    await waitFor(() => delivered().length == 3, { message: 'the 3 events' });
    assert.ok(Date.now() - started < 900, 'no window to wait out');
    assert.deepEqual(collector.log().batches.map((b) => b.body.batch.length), [1, 1, 1]);
  });
});

test('a leading request that never takes its window is replaced once its grace is past', async () => {
  // Here in Node: the first leader's timer is lost, as when its request's waitUntil is cancelled.
  collector.control.reset();
  const wrapped = withTelemetry(app, { endpoint: `${collector.url}/batch/`, apiKey: 'phc_test', flushIntervalMs: 100 });
  const handed = [];
  const ctx = { waitUntil: (p) => handed.push(p) };
  const realSetTimeout = globalThis.setTimeout;
  const realNow = Date.now;
  let lose = true;
  globalThis.setTimeout = (fn, ms, ...rest) => (lose && ms === 100 ? ((lose = false), 0) : realSetTimeout(fn, ms, ...rest));
  try {
    await wrapped.fetch(new Request('https://shop.example/first'), {}, ctx);
    await wrapped.fetch(new Request('https://shop.example/second'), {}, ctx);
    assert.equal(handed.length, 1, 'within its window and grace, the first leader keeps the window');
    Date.now = () => realNow() + 100 + 5000 + 1; // the window (100 ms) and the grace (5 s) are past
    await wrapped.fetch(new Request('https://shop.example/third'), {}, ctx);
    assert.equal(handed.length, 2, 'the next request leads');
  } finally {
    Date.now = realNow;
    globalThis.setTimeout = realSetTimeout;
  }
  await handed[1];
  const batches = collector.log().batches;
  assert.deepEqual(batches.map((b) => b.body.batch.map((e) => e.properties.path)), [['/first', '/second', '/third']]);
});

test('a window makes no more collector requests than subrequestLimit; what it could not send goes with the next window', async () => {
  const options = { subrequestLimit: 2, maxBatchEvents: 2, flushIntervalMs: 200, initialBackoffMs: 50, maxBackoffMs: 50 };
  await withWorker(options, async ({ worker, log }) => {
    collector.control.plan([{ status: 503, times: 2 }], { status: 200 });
    await Promise.all([0, 1, 2].map(async (i) => (await worker.dispatchFetch(`https://shop.example/s/${i}`)).text()));
    // One window, two batches (2 + 1 events), both answered 503; a retry would be a third.
    await waitFor(() => collector.log().batches.length >= 2, { message: "the window's two requests" });
    await new Promise((r) => setTimeout(r, 600));
    assert.deepEqual(collector.log().batches.map((b) => b.status), [503, 503], 'no third request from that window');
    const first = new Map(collector.log().batches.flatMap((b) => b.body.batch).map((e) => [e.properties.path, e.uuid]));
    // The next request leads the next window, which sends the three held back with its own.
    await (await worker.dispatchFetch('https://shop.example/s/3')).text();
    await waitFor(() => delivered().length == 4, { message: 'the four events' });
    assert.deepEqual(delivered().map((e) => e.properties.path).sort(), ['/s/0', '/s/1', '/s/2', '/s/3']);
    for (const e of delivered()) {
      if (first.has(e.properties.path)) assert.equal(e.uuid, first.get(e.properties.path), 'resent with its uuid');
    }
    assert.doesNotMatch(log.text(), /was not delivered/);
  });
});

test('a Retry-After past deadlineMs abandons the event at once, and the Worker log says so', async () => {
  await withWorker({ deadlineMs: 3000 }, async ({ worker, log }) => {
    collector.control.plan([{ status: 429, retryAfter: '60', times: 5 }]);
    const response = await worker.dispatchFetch('https://shop.example/');
    assert.equal(response.status, 200);
    const answered = Date.now();
    await waitFor(() => /a http_request event was not delivered \(abandoned at deadlineMs; last error: HTTP 429\)/.test(log.text()), {
      message: 'the abandon warning',
    });
    assert.ok(Date.now() - answered < 2000, 'abandoned when the 429 came, not at the deadline');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(collector.log().batches.length, 1, 'no retry before the Retry-After');
  });
});

test('a collector slower than deadlineMs: the request is aborted at the deadline, and logged', async () => {
  await withWorker({ deadlineMs: 1000 }, async ({ worker, log }) => {
    collector.control.plan([], { status: 200, delayMs: 3000 });
    const started = Date.now();
    const response = await worker.dispatchFetch('https://shop.example/');
    assert.equal(response.status, 200);
    await waitFor(() => /a http_request event was not delivered \(abandoned at deadlineMs\)/.test(log.text()), {
      message: 'the abandon warning',
    });
    // The batching window (flushIntervalMs, 1000 by default), then deadlineMs.
    const waited = Date.now() - started;
    assert.ok(waited >= 1900 && waited < 3500, `abandoned at the deadline after the window (${waited} ms)`);
  });
});

test('without SPOOL_ENDPOINT, requests are served and the log says once why nothing is sent', async () => {
  await withWorker({}, async ({ worker, log }) => {
    for (let i = 0; i < 3; i++) {
      const response = await worker.dispatchFetch('https://shop.example/');
      assert.equal(await response.text(), 'ok');
    }
    await waitFor(() => log.text().includes('SPOOL_ENDPOINT'), { message: 'the error line' });
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(log.text().match(/SPOOL_ENDPOINT/g).length, 1, log.text());
    assert.equal(collector.log().batches.length, 0);
  }, { SPOOL_API_KEY: 'phc_missing_endpoint' });
});

test('debug logs each request and outcome, never the API key', async () => {
  const bindings = { SPOOL_ENDPOINT: `${collector.url}/batch/`, SPOOL_API_KEY: 'phc_never_logged' };
  await withWorker({ debug: true }, async ({ worker, log }) => {
    await (await worker.dispatchFetch('https://shop.example/')).text();
    await waitFor(() => delivered().length == 1, { message: 'the event' });
    await waitFor(() => log.text().includes('spool: outcome'), { message: 'the debug lines' });
    assert.match(log.text(), /spool: POST/);
    assert.ok(!log.text().includes('phc_never_logged'));
    assert.equal(collector.log().batches[0].body.api_key, 'phc_never_logged');
  }, bindings);
});

test("an answer's body is read to its end and dropped, never cancelled", async () => {
  // Here in Node, with the global fetch the wasm calls answering a 2xx with a 4-chunk body.
  const realFetch = globalThis.fetch;
  let pulled = 0;
  let cancelled = false;
  const bodies = [];
  globalThis.fetch = async (url, init) => {
    bodies.push(new Uint8Array(await new Response(init.body).arrayBuffer()));
    const body = new ReadableStream({
      pull(controller) {
        if (pulled++ < 4) controller.enqueue(new Uint8Array(64 * 1024));
        else controller.close();
      },
      cancel() {
        cancelled = true;
      },
    });
    return new Response(body, { status: 200 });
  };
  try {
    const wrapped = withTelemetry(app, { endpoint: 'https://collector.example/batch/', apiKey: 'phc_test', batchMode: 'auto' });
    const handed = [];
    await wrapped.fetch(new Request('https://shop.example/drained'), {}, { waitUntil: (p) => handed.push(p) });
    await Promise.all(handed);
    await waitFor(() => pulled == 5, { message: 'the body read to its end' });
  } finally {
    globalThis.fetch = realFetch;
  }
  assert.equal(cancelled, false);
  assert.equal(bodies.length, 1);
  assert.deepEqual([...bodies[0].slice(0, 2)], [0x1f, 0x8b], 'the body gzipped');
});
