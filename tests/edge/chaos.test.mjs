// Chaos for the edge middleware in workerd (miniflare, offline): a Worker wrapped by
// withTelemetry serves hundreds of requests, several at a time; their events go out in small
// batches, each from the exporter of the request that led its window, inside that request's
// ctx.waitUntil, to a collector that answers
// each request at random from a seeded draw (tools/collector.mjs, chaos mode): 2xx, 400, 429
// and 503 with a small Retry-After (seconds or an HTTP-date), 500, 503, stalls past the
// request timeout, dropped connections, events kept but answered 500. Once every waitUntil
// has settled, the invariants of tests/e2e/chaos.test.mjs are checked against the Worker's
// record of its requests, its log and the collector's log:
//
// - every request's event is acknowledged by the collector or logged by the middleware as
//   not delivered (console.warn, with the count and the reason), never neither, and the
//   counts add up;
// - an event is accepted twice only if its earlier acceptance went unacknowledged;
// - no request reaches the collector before a Retry-After deadline named by an answer the
//   isolate had already taken, whichever request's exporter took it (one hold per endpoint);
// - workerd never refuses I/O shared between requests.
//
// The Worker records the wire as the browser test's page does: it wraps the global fetch the
// exporters call, tags each request (?wire=N), numbers sends and answers in one sequence (an
// answer at the moment the exporter takes it), and counts the waitUntil promises handed over
// and settled.
//
// SPOOL_EDGE_CHAOS_REQUESTS sets the requests (default 300), SPOOL_EDGE_CHAOS_SEED the seed
// (default 42). Needs the built pkg/ (make build; make test-edge does that).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCollector, waitFor } from '../e2e/harness.mjs';
import { startWorker } from './workerd.mjs';
import { CHAOS_WEIGHTS, checkDuplicates, checkRetryAfter } from '../e2e/chaos-invariants.mjs';

const REQUESTS = Number(process.env.SPOOL_EDGE_CHAOS_REQUESTS ?? 300);
const SEED = Number(process.env.SPOOL_EDGE_CHAOS_SEED ?? 42);
// Requests dispatched at once.
const WIDTH = 20;
// Windows of 50 ms and batches of at most 3 events: many batches, several in flight at once.
const OPTIONS = {
  apiKey: 'phc_test',
  requestTimeoutMs: 1000,
  initialBackoffMs: 50,
  maxBackoffMs: 500,
  maxAttempts: 6,
  deadlineMs: 8000,
  flushIntervalMs: 50,
  maxBatchEvents: 3,
};
// Past requestTimeoutMs: the exporter always gives up first. Retry-After of 0 to 2 s: every
// one holds the whole isolate back.
const CHAOS = { seed: SEED, weights: CHAOS_WEIGHTS, stallMs: 3000, retryAfterMaxSeconds: 2 };

// The test Worker: the middleware as the example Worker uses it, with OPTIONS, and the wire
// recorder around it. The recorder's state is plain data at module scope (one isolate).
const WORKER = `
import wasm from "./pkg/spool_edge_bg.wasm";
import { initSync, withTelemetry } from "./pkg/edge.js";
initSync({ module: wasm });

let clock = 0;
const sent = [];  // [seq]: by wire id, when the isolate sent it
const taken = []; // [wire, seq, status or null (network error, abort), Retry-After or null]
let handed = 0;
let settled = 0;
const original = globalThis.fetch.bind(globalThis);
globalThis.fetch = (url, init) => {
  const wire = sent.length;
  sent.push(++clock);
  const tagged = new URL(url);
  tagged.searchParams.set("wire", String(wire));
  const answer = original(tagged.href, init);
  // The exporter's shell calls then() once: the answer is recorded as it hands it over.
  return {
    then(ok, failed) {
      return answer.then(
        (r) => (taken.push([wire, ++clock, r.status, r.headers.get("Retry-After")]), ok(r)),
        (e) => (taken.push([wire, ++clock, null, null]), failed(e)),
      );
    },
  };
};

const app = withTelemetry({ async fetch() { return new Response("ok"); } }, ${JSON.stringify(OPTIONS)});

export default {
  async fetch(request, env, ctx) {
    if (new URL(request.url).pathname == "/__wire") return Response.json({ sent, taken, handed, settled });
    const counted = {
      waitUntil: (p) => (handed++, ctx.waitUntil(p.finally(() => settled++))),
      passThroughOnException: () => ctx.passThroughOnException(),
    };
    return app.fetch(request, env, counted);
  },
};
`;

let collector;
let worker;
let log;
before(async () => {
  collector = await startCollector({ port: 0, host: '127.0.0.1' });
  ({ worker, log } = await startWorker(WORKER, { SPOOL_ENDPOINT: `${collector.url}/batch/` }));
});
after(async () => {
  await worker?.dispose();
  await collector?.close();
});

const is2xx = (status) => status >= 200 && status < 300;
const wireOf = (entry) => Number(new URL(entry.url, 'http://collector').searchParams.get('wire'));
const pathsOf = (entry) => (entry.body?.batch ?? []).map((event) => event?.properties?.path);
const describeEntry = (e) => `entry ${e.seq} (${pathsOf(e).join(' ')})`;

/** Checks the run; returns { violations, summary }. */
function check({ sent, taken, handed, settled }, entries, logText) {
  const violations = [];
  const violate = (m) => violations.length < 50 && violations.push(m);
  const same = (actual, expected, what) => actual === expected || violate(`${what}: ${actual}, not ${expected}`);

  same(settled, handed, 'waitUntil promises settled');
  if (!(handed > 0 && handed < REQUESTS)) violate(`${handed} batch windows for ${REQUESTS} requests`);
  const entriesOf = new Map();
  for (const e of entries) {
    const wire = wireOf(e);
    if (!(wire >= 0 && wire < sent.length)) {
      violate(`collector entry ${e.seq} (${e.url}) is no request the Worker made`);
      continue;
    }
    if (!entriesOf.has(wire)) entriesOf.set(wire, []);
    entriesOf.get(wire).push(e);
  }
  // The entry whose answer the Worker took, for each request answered with a status.
  const answerOf = new Map();
  const takenOf = new Map();
  for (const [wire, seq, status, retryAfter] of taken) {
    if (takenOf.has(wire)) violate(`request ${wire} answered twice`);
    takenOf.set(wire, { seq, status, retryAfter });
    if (status === null) continue;
    const answered = (entriesOf.get(wire) ?? []).filter(
      (e) => e.answeredAt !== null && e.closedAt === null && e.status === status,
    );
    if (answered.length !== 1) {
      violate(`request ${wire}: the Worker took status ${status}, the collector answered it ${answered.length} times`);
      continue;
    }
    answerOf.set(wire, answered[0]);
  }

  // 1. Every request's event acknowledged, or logged as not delivered; the counts add up.
  const paths = new Set(Array.from({ length: REQUESTS }, (_, i) => `/items/${i}`));
  const acknowledged = new Set();
  for (const [wire, e] of answerOf) {
    if (!is2xx(takenOf.get(wire).status)) continue;
    for (const path of pathsOf(e)) {
      if (acknowledged.has(path)) violate(`the event of ${path} acknowledged twice`);
      acknowledged.add(path);
    }
  }
  const accepted = new Map(); // uuid -> accepted entries, in arrival order
  const acceptedPaths = new Set();
  const uuidOf = new Map(); // path -> uuid
  let batched = 0;
  for (const e of entries) {
    const batch = e.body?.batch;
    if (!(batch?.length >= 1 && batch.length <= OPTIONS.maxBatchEvents) || !batch.every((ev) => paths.has(ev?.properties?.path))) {
      violate(`entry ${e.seq} is not a batch of events of requests made: ${JSON.stringify(e.body)?.slice(0, 200)}`);
      continue;
    }
    if (batch.length > 1) batched++;
    for (const event of batch) {
      const path = event.properties.path;
      if ((uuidOf.get(path) ?? event.uuid) !== event.uuid) violate(`${path}: two uuids`);
      uuidOf.set(path, event.uuid);
      if (e.accepted) {
        acceptedPaths.add(path);
        if (!accepted.has(event.uuid)) accepted.set(event.uuid, []);
        accepted.get(event.uuid).push(e);
      }
    }
  }
  if (batched === 0) violate('no collector request carried more than one event');
  for (const path of acknowledged) {
    if (!acceptedPaths.has(path)) violate(`the event of ${path} acknowledged but never accepted`);
  }
  // "a http_request event was" or "N http_request events were" not delivered (reasons; last error).
  const warnings = [...logText.matchAll(/spool: (a|\d+) http_request events? (?:was|were) not delivered \(([^;)]*)(?:; last error: ([^)]*))?\)/g)];
  const notDelivered = {};
  let logged = 0;
  for (const [, count, why, last] of warnings) {
    const n = count == 'a' ? 1 : Number(count);
    logged += n;
    const reason = last ? `${why} (${last.replace(/\d+ ms/, 'N ms')})` : why;
    notDelivered[reason] = (notDelivered[reason] ?? 0) + n;
  }
  same(acknowledged.size + logged, REQUESTS, 'events acknowledged + logged as not delivered vs requests');
  const neverArrived = [...paths].filter((p) => !acceptedPaths.has(p)).length;
  if (neverArrived > logged) violate(`${neverArrived} events never accepted, ${logged} logged`);

  // 2. Accepted twice only after an unacknowledged acceptance.
  const { duplicated, duplicateCauses } = checkDuplicates(accepted, (e) => {
    const wire = wireOf(e);
    return answerOf.get(wire) === e && is2xx(takenOf.get(wire).status);
  }, 'Worker', violate);

  // 3. Retry-After, across requests: a request the isolate sent after it had taken an answer
  // naming a deadline arrives at or after that deadline (both clocks are this machine's).
  // Requests sent before the answer was taken were already on their way.
  const deadlines = []; // [seq when taken, until, entry]
  for (const [wire, e] of answerOf) {
    if (e.retryAfterUntil != null) deadlines.push([takenOf.get(wire).seq, e.retryAfterUntil, e]);
  }
  const sends = entries.filter((e) => wireOf(e) < sent.length).map((e) => [sent[wireOf(e)], e]);
  checkRetryAfter(deadlines, sends, violate, describeEntry);

  // 4. workerd refused nothing.
  const refused = logText.match(/.*(different request|Cannot perform I\/O|cross-request).*/i);
  if (refused) violate(`workerd: ${refused[0]}`);

  const fates = {};
  for (const e of entries) fates[e.fate] = (fates[e.fate] ?? 0) + 1;
  const resent = [...entriesOf.values()].reduce((n, es) => n + es.length - 1, 0);
  return {
    violations,
    summary: {
      requests: REQUESTS,
      batchWindows: handed,
      collectorRequests: entries.length,
      batchesOfMoreThanOne: batched,
      workerRequests: sent.length,
      runtimeResends: resent,
      fates,
      delivered: acknowledged.size,
      notDelivered,
      neverArrived,
      duplicatedEvents: duplicated,
      duplicateCauses,
      retryAfterAnswers: deadlines.length,
      violations: violations.length,
    },
  };
}

test(`edge chaos: ${REQUESTS} Worker requests through random faults: every event delivered or logged, ` +
  'duplicated only when unacknowledged, no Retry-After rushed across requests', { timeout: 10 * 60_000 }, async (t) => {
  collector.control.reset();
  collector.control.chaos(CHAOS);
  const started = Date.now();
  for (let i = 0; i < REQUESTS; i += WIDTH) {
    const slice = [];
    for (let j = i; j < Math.min(REQUESTS, i + WIDTH); j++) {
      slice.push(worker.dispatchFetch(`https://shop.example/items/${j}`).then(async (r) => [r.status, await r.text()]));
    }
    for (const [status, body] of await Promise.all(slice)) assert.deepEqual([status, body], [200, 'ok']);
  }
  const served = Date.now() - started;

  const wire = async () => (await worker.dispatchFetch('https://shop.example/__wire')).json();
  // Every delivery settled: each ends by its deadline (8 s after its window, plus the abort).
  const record = await waitFor(async () => {
    const w = await wire();
    return w.handed > 0 && w.settled >= w.handed && w;
  }, { timeoutMs: 60_000 + REQUESTS * 100, intervalMs: 100, message: 'every waitUntil settled' });
  const settledIn = Date.now() - started;
  // Stalled requests the Worker gave up on: the collector sees their connections close.
  await waitFor(() => collector.log().batches.every((e) => e.answeredAt !== null || e.closedAt !== null), {
    timeoutMs: 10_000,
    message: 'every request answered or closed at the collector',
  });
  // The warnings were printed before their waitUntil settled; give workerd's pipe a moment.
  const ok = new Set(record.taken.filter(([, , status]) => is2xx(status)).map(([wire]) => wire));
  const delivered = new Set(
    collector.log().batches.filter((e) => e.answeredAt !== null && ok.has(wireOf(e))).flatMap(pathsOf),
  ).size;
  const warned = () =>
    [...log.text().matchAll(/spool: (a|\d+) http_request events? (?:was|were) not delivered/g)]
      .reduce((n, [, count]) => n + (count == 'a' ? 1 : Number(count)), 0);
  await waitFor(() => warned() >= REQUESTS - delivered, { timeoutMs: 5000, message: 'the not-delivered warnings' })
    .catch(() => {});
  await new Promise((r) => setTimeout(r, 300));

  const { violations, summary } = check(record, collector.log().batches, log.text());
  summary.seconds = { served: served / 1000, settled: settledIn / 1000 };
  t.diagnostic(`edge chaos summary (seed ${SEED}): ${JSON.stringify(summary)}`);
  assert.deepEqual(violations, [], `${summary.violations} violations`);
  // The run exercised what it claims to.
  if (REQUESTS >= 300) {
    for (const fate of Object.keys(CHAOS_WEIGHTS)) assert.ok(summary.fates[fate] > 0, `fate ${fate} drawn`);
    assert.ok(summary.retryAfterAnswers > 0, 'Retry-After answers taken');
  }
});
