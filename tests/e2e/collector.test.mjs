// Tests of tools/collector.mjs itself: the end-to-end tests trust what it records and how it
// answers, so its plan, log and static serving are pinned down here, without a browser.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { withCollector, startCollector, waitFor } from './harness.mjs';

const COLLECTOR_CLI = fileURLToPath(new URL('../../tools/collector.mjs', import.meta.url));

const batchBody = (n = 1) =>
  JSON.stringify({
    api_key: 'k',
    batch: Array.from({ length: n }, (_, i) => ({ event: `e${i}`, distinct_id: 'd', properties: {} })),
    sent_at: '2026-01-01T00:00:00.000Z',
  });

const post = (c, body = batchBody(), { path: p = '/batch/', headers = {} } = {}) =>
  fetch(c.url + p, { method: 'POST', body, headers: { 'Content-Type': 'text/plain', ...headers } });

// A raw request: fetch would normalise away the `..` segments these tests need to send.
function rawRequest(url, { method = 'GET', path: p, headers = {} } = {}) {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({ hostname, port, method, path: p, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res));
    });
    req.on('error', reject);
    req.end();
  });
}

test('records a batch and answers 200 {"status":1} by default', () =>
  withCollector(async (c) => {
    const res = await post(c, batchBody(3), { headers: { Origin: 'http://example.test' } });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: 1 });
    assert.equal(res.headers.get('access-control-allow-origin'), 'http://example.test');

    const { batches, preflights } = c.log();
    assert.equal(preflights, 0);
    assert.equal(batches.length, 1);
    const [b] = batches;
    assert.equal(b.seq, 1);
    assert.equal(b.path, '/batch/');
    assert.equal(b.method, 'POST');
    assert.equal(b.contentType, 'text/plain');
    assert.equal(b.origin, 'http://example.test');
    assert.equal(b.bytes, Buffer.byteLength(batchBody(3)));
    assert.equal(b.status, 200);
    assert.equal(b.accepted, true);
    assert.equal(b.events, 3);
    assert.equal(b.sentAt, '2026-01-01T00:00:00.000Z');
    assert.equal(b.body.batch[2].event, 'e2');
    assert.equal(b.raw, undefined);
    assert.ok(Math.abs(b.receivedAt - Date.now()) < 5000);
  }));

test('also records /batch and /i/v0/e/, and keeps invalid JSON as raw', () =>
  withCollector(async (c) => {
    await post(c, batchBody(1), { path: '/batch' });
    await post(c, JSON.stringify({ event: 'x', properties: {} }), { path: '/i/v0/e/' });
    await post(c, 'not json');
    const b = c.log().batches;
    assert.deepEqual(b.map((x) => [x.seq, x.path, x.events]), [[1, '/batch', 1], [2, '/i/v0/e/', 1], [3, '/batch/', 0]]);
    assert.equal(b[2].body, null);
    assert.equal(b[2].raw, 'not json');
    assert.equal(b[2].sentAt, null);
  }));

test('the plan is consumed in order, `times` repeats an answer, then the default applies', () =>
  withCollector(async (c) => {
    c.control.plan(
      [
        { status: 500, times: 2 },
        { status: 429, retryAfter: '2' },
        { status: 429, retryAfter: 'Wed, 21 Oct 2015 07:28:00 GMT' },
      ],
      { status: 503 },
    );
    const answers = [];
    for (let i = 0; i < 6; i++) {
      const res = await post(c);
      answers.push([res.status, res.headers.get('retry-after')]);
    }
    assert.deepEqual(answers, [
      [500, null],
      [500, null],
      [429, '2'],
      [429, 'Wed, 21 Oct 2015 07:28:00 GMT'],
      [503, null],
      [503, null],
    ]);
    const log = c.log().batches;
    assert.deepEqual(log.map((b) => b.status), [500, 500, 429, 429, 503, 503]);
    assert.ok(log.every((b) => !b.accepted), 'errors are not deliveries');
  }));

test('Retry-After is readable cross-origin (exposed)', () =>
  withCollector(async (c) => {
    c.control.plan([{ status: 429, retryAfter: 1 }]);
    const res = await post(c, batchBody(), { headers: { Origin: 'http://a.test' } });
    assert.equal(res.headers.get('retry-after'), '1');
    assert.equal(res.headers.get('access-control-expose-headers'), 'Retry-After');
  }));

test('reset: true drops the connection without an answer', () =>
  withCollector(async (c) => {
    c.control.plan([{ reset: true }]);
    await assert.rejects(post(c), TypeError);
    const [b] = c.log().batches;
    assert.equal(b.status, null);
    assert.equal(b.accepted, false);
    assert.equal((await post(c)).status, 200, 'back to the default afterwards');
  }));

test('afterAccept records the batch as delivered but answers an error (or drops the connection)', () =>
  withCollector(async (c) => {
    c.control.plan([{ status: 500, afterAccept: true }, { reset: true, afterAccept: true }]);
    assert.equal((await post(c)).status, 500);
    await assert.rejects(post(c));
    assert.deepEqual(c.log().batches.map((b) => [b.status, b.accepted]), [[500, true], [null, true]]);
  }));

test('delayMs answers late, and the batch is in the log while the client waits', () =>
  withCollector(async (c) => {
    c.control.plan([{ status: 200, delayMs: 300 }]);
    const started = Date.now();
    const pending = post(c);
    await new Promise((r) => setTimeout(r, 150));
    const [early] = c.log().batches;
    assert.equal(early.answeredAt, null, 'received, not yet answered');
    const res = await pending;
    assert.equal(res.status, 200);
    assert.ok(Date.now() - started >= 290, `answered after ${Date.now() - started} ms`);
    const [b] = c.log().batches;
    assert.ok(b.answeredAt - b.receivedAt >= 290);
  }));

test('the HTTP control API: POST /control, GET /control/log, POST /control/reset', () =>
  withCollector(async (c) => {
    const ctl = (p, body) =>
      fetch(c.url + p, { method: body === undefined ? 'GET' : 'POST', body }).then((r) => r.json());
    assert.deepEqual(await ctl('/control', JSON.stringify({ plan: [{ status: 404 }], default: { status: 202 } })), {
      ok: true,
    });
    assert.equal((await post(c)).status, 404);
    assert.equal((await post(c)).status, 202);
    const log = await ctl('/control/log');
    assert.deepEqual(log.batches.map((b) => b.status), [404, 202]);
    assert.equal(log.preflights, 0);

    assert.equal((await fetch(c.url + '/control', { method: 'POST', body: '{' })).status, 400);
    await ctl('/control/reset', '');
    assert.deepEqual(await ctl('/control/log'), { batches: [], preflights: 0 });
    assert.equal((await post(c)).status, 200, 'reset also restores the default answer');
    assert.equal(c.log().batches[0].seq, 1, 'and restarts the sequence');
  }));

test('control.reset() clears the plan, the default, the log and the preflight count', () =>
  withCollector(async (c) => {
    c.control.plan({ plan: [{ status: 500, times: 5 }], default: { status: 503 } });
    await fetch(c.url + '/batch/', { method: 'OPTIONS' });
    await post(c);
    c.control.reset();
    assert.deepEqual(c.log(), { batches: [], preflights: 0 });
    assert.equal((await post(c)).status, 200);
  }));

test('OPTIONS answers 204 with CORS headers and counts a preflight', () =>
  withCollector(async (c) => {
    const res = await fetch(c.url + '/batch/', {
      method: 'OPTIONS',
      headers: { Origin: 'http://a.test', 'Access-Control-Request-Method': 'POST' },
    });
    assert.equal(res.status, 204);
    assert.equal(res.headers.get('access-control-allow-origin'), 'http://a.test');
    assert.equal(res.headers.get('access-control-allow-headers'), '*');
    assert.equal(res.headers.get('access-control-allow-methods'), 'POST, GET, OPTIONS');
    assert.equal(c.log().preflights, 1);
    assert.equal(c.log().batches.length, 0);
  }));

test('serves files with their content types, no-store, and nothing outside the root', async () => {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'collector-root-'));
  const files = {
    'pkg/spool_bg.wasm': ['application/wasm', Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0])],
    'pkg/spool.js': ['text/javascript; charset=utf-8', 'export {}'],
    'www/app.mjs': ['text/javascript; charset=utf-8', 'export {}'],
    'www/index.html': ['text/html; charset=utf-8', '<!doctype html>'],
    'www/style.css': ['text/css; charset=utf-8', 'body{}'],
    'www/data.json': ['application/json; charset=utf-8', '{}'],
    'www/logo.svg': ['image/svg+xml', '<svg/>'],
    'www/logo.png': ['image/png', Buffer.from([0x89, 0x50])],
  };
  for (const [name, [, data]] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(root, name)), { recursive: true });
    await fs.writeFile(path.join(root, name), data);
  }
  await fs.writeFile(path.join(path.dirname(root), 'collector-secret.txt'), 'secret');
  try {
    await withCollector(
      async (c) => {
        for (const [name, [type, data]] of Object.entries(files)) {
          const res = await fetch(`${c.url}/${name}`);
          assert.equal(res.status, 200, name);
          assert.equal(res.headers.get('content-type'), type, name);
          assert.equal(res.headers.get('cache-control'), 'no-store', name);
          assert.deepEqual(Buffer.from(await res.arrayBuffer()), Buffer.from(data), name);
        }
        const home = await fetch(c.url + '/', { redirect: 'manual' });
        assert.equal(home.status, 302);
        assert.equal(home.headers.get('location'), '/www/');
        assert.equal(await (await fetch(c.url + '/')).text(), '<!doctype html>', 'redirect lands on www/index.html');
        const noSlash = await fetch(c.url + '/www', { redirect: 'manual' });
        assert.equal(noSlash.headers.get('location'), '/www/');

        assert.equal((await fetch(c.url + '/missing.js')).status, 404);
        assert.equal((await fetch(c.url + '/pkg/')).status, 404, 'no directory listings');
        for (const p of ['/../collector-secret.txt', '/%2e%2e/collector-secret.txt', '/www/..%2f..%2fcollector-secret.txt']) {
          assert.equal((await rawRequest(c.url, { path: p })).statusCode, 404, p);
        }
        assert.equal(c.log().batches.length, 0, 'GETs are not batches');
      },
      { root },
    );
  } finally {
    await fs.rm(root, { recursive: true, force: true });
    await fs.rm(path.join(path.dirname(root), 'collector-secret.txt'), { force: true });
  }
});

test('serves the repository by default (the e2e pages load from it)', () =>
  withCollector(async (c) => {
    const res = await fetch(c.url + '/tests/e2e/pages/smoke.html');
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/html; charset=utf-8');
  }));

test('close() does not wait for idle keep-alive connections', async () => {
  const c = await startCollector();
  await post(c); // leaves a keep-alive connection open in fetch's pool
  const started = Date.now();
  await c.close();
  assert.ok(Date.now() - started < 1000);
});

test('CLI prints one line with its URL and serves until killed', async () => {
  const child = spawn(process.execPath, [COLLECTOR_CLI, '--port', '0', '--host', '127.0.0.1'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    const line = await new Promise((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d) => {
        out += d;
        if (out.includes('\n')) resolve(out);
      });
      child.on('exit', (code) => reject(new Error(`collector exited with ${code}: ${out}`)));
    });
    const m = /^collector listening on (http:\/\/127\.0\.0\.1:(\d+))\n$/.exec(line);
    assert.ok(m, JSON.stringify(line));
    assert.ok(Number(m[2]) > 0);
    const res = await fetch(m[1] + '/batch/', { method: 'POST', body: batchBody(2) });
    assert.equal(res.status, 200);
    const log = await (await fetch(m[1] + '/control/log')).json();
    assert.equal(log.batches[0].events, 2);
  } finally {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    assert.equal(await exited, 0, 'exits cleanly on SIGTERM');
  }
});

// Chaos mode: seeded random answers for the reliability tests (tests/e2e/chaos.test.mjs).

const ALL_FATES = { ok: 1, badRequest: 1, retryAfterSeconds: 1, retryAfterDate: 1, e500: 1, e503: 1, stall: 1, reset: 1, acceptThen500: 1 };

/** Posts `n` batches one after another; returns what each got: [status, Retry-After] or 'error'. */
async function postSequentially(c, n) {
  const answers = [];
  for (let i = 0; i < n; i++) {
    try {
      const res = await post(c);
      answers.push([res.status, res.headers.get('retry-after')]);
    } catch {
      answers.push('error');
    }
  }
  return answers;
}

test('chaos: each fate answers as its name says, and the log records the fate and any Retry-After deadline', () =>
  withCollector(async (c) => {
    c.control.chaos({ seed: 7, weights: ALL_FATES, stallMs: 100 });
    const answers = await postSequentially(c, 90);
    const log = c.log().batches;
    assert.equal(log.length, 90);
    const seen = new Set();
    log.forEach((b, i) => {
      const [status, retryAfter] = answers[i] === 'error' ? [null, null] : answers[i];
      seen.add(b.fate);
      const where = `request ${i} (${b.fate})`;
      switch (b.fate) {
        case 'ok':
        case 'stall':
          // A stall this short (100 ms) outlasts no client here: the 200 arrives late.
          assert.equal(status, 200, where);
          assert.equal(b.accepted, true, where);
          if (b.fate === 'stall') assert.ok(b.answeredAt - b.receivedAt >= 90, where);
          break;
        case 'badRequest':
          assert.equal(status, 400, where);
          assert.equal(b.accepted, false, where);
          break;
        case 'retryAfterSeconds': {
          assert.equal(status, 429, where);
          assert.match(retryAfter, /^[0-3]$/, where);
          assert.equal(b.retryAfter, retryAfter, where);
          assert.equal(b.retryAfterUntil, b.answeredAt + Number(retryAfter) * 1000, where);
          break;
        }
        case 'retryAfterDate': {
          assert.equal(status, 503, where);
          assert.match(retryAfter, /^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/, where);
          assert.equal(b.retryAfterUntil, Date.parse(retryAfter), where);
          assert.ok(b.retryAfterUntil >= b.answeredAt && b.retryAfterUntil <= b.answeredAt + 3000, where);
          break;
        }
        case 'e500':
        case 'e503':
          assert.equal(status, b.fate === 'e500' ? 500 : 503, where);
          assert.equal(retryAfter, null, where);
          assert.equal(b.retryAfterUntil, undefined, where);
          assert.equal(b.accepted, false, where);
          break;
        case 'reset':
          assert.equal(answers[i], 'error', where);
          assert.equal(b.status, null, where);
          assert.equal(b.accepted, false, where);
          assert.ok(b.closedAt !== null, where);
          break;
        case 'acceptThen500':
          assert.equal(status, 500, where);
          assert.equal(b.accepted, true, where);
          break;
        default:
          assert.fail(`unknown fate ${b.fate}`);
      }
    });
    assert.deepEqual([...seen].sort(), Object.keys(ALL_FATES).sort(), 'every fate drawn in 90 requests');
  }));

test('chaos: the same seed draws the same fates in the same order; another seed does not', async () => {
  const fates = (seed) =>
    withCollector(async (c) => {
      c.control.chaos({ seed, weights: { ok: 5, e503: 3, badRequest: 2 } });
      await postSequentially(c, 40);
      return c.log().batches.map((b) => b.fate);
    });
  const [a, b, other] = [await fates(42), await fates(42), await fates(43)];
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, other);
});

test('chaos: a stalled request the client gives up on stays accepted and unanswered, with closedAt', () =>
  withCollector(async (c) => {
    c.control.chaos({ seed: 1, weights: { stall: 1 }, stallMs: 20_000 });
    await assert.rejects(fetch(c.url + '/batch/', { method: 'POST', body: batchBody(2), signal: AbortSignal.timeout(200) }));
    const [b] = await waitFor(() => {
      const batches = c.log().batches;
      return batches[0]?.closedAt !== null && batches;
    });
    assert.equal(b.fate, 'stall');
    assert.equal(b.accepted, true, 'the collector kept the events');
    assert.equal(b.answeredAt, null, 'nothing was answered');
    assert.ok(b.closedAt >= b.receivedAt);
  }));

test('chaos: the plan still comes first; a chaos-only body keeps the plan; chaos null turns it off; bad configs get 400', () =>
  withCollector(async (c) => {
    const ctl = (body) => fetch(c.url + '/control', { method: 'POST', body: JSON.stringify(body) });
    assert.equal((await ctl({ plan: [{ status: 418 }] })).status, 200);
    assert.equal((await ctl({ chaos: { seed: 3, weights: { e503: 1 } } })).status, 200);
    assert.equal((await post(c)).status, 418, 'the plan, kept by a chaos-only body, answers first');
    assert.equal((await post(c)).status, 503, 'then chaos');
    assert.equal(c.log().batches[0].fate, undefined, 'planned answers have no fate');
    assert.equal(c.log().batches[1].fate, 'e503');
    assert.equal((await ctl({ chaos: null })).status, 200);
    assert.equal((await post(c)).status, 200, 'off: the default again');
    for (const bad of [
      { chaos: { weights: { teapot: 1 } } },
      { chaos: { weights: { ok: -1 } } },
      { chaos: { weights: { ok: 0 } } },
      { chaos: { seed: 1.5, weights: { ok: 1 } } },
      { chaos: { weights: { ok: 1 }, stallMs: -5 } },
      { chaos: {} },
    ]) {
      const res = await ctl(bad);
      assert.equal(res.status, 400, JSON.stringify(bad));
      assert.match((await res.json()).error, /^chaos\./);
    }
    c.control.chaos({ seed: 3, weights: { e500: 1 } });
    c.control.reset();
    assert.equal((await post(c)).status, 200, 'reset turns chaos off');
  }));

test('strict PostHog mode: capture\'s refusals, each for the whole request, and gzip found by its magic bytes', async () => {
  await withCollector(async (collector) => {
    const post = (body, headers = {}) =>
      fetch(`${collector.url}/strict/batch/`, { method: 'POST', body, headers }).then((r) => r.status);
    const ev = (e) => JSON.stringify({ api_key: 'phc_k', batch: [{ event: 'ok', distinct_id: 'd', properties: {} }, e] });
    const good = { event: 'e', distinct_id: 'd', properties: {}, uuid: '01890a5d-ac96-774b-bcce-b302099a8057' };
    assert.equal(await post(ev(good)), 200);
    // serde_json: a lone surrogate escape, either half; a pair is fine; nesting past 127.
    assert.equal(await post(ev(good).replace('"properties":{}', '"properties":{"s":"\\ud83d"}')), 400);
    assert.equal(await post(ev(good).replace('"properties":{}', '"properties":{"s":"x\\ude00"}')), 400);
    assert.equal(await post(ev(good).replace('"properties":{}', '"properties":{"s":"\\ud83d\\ude00","t":"\\\\ud83d"}')), 200);
    const nest = (d) => ev({ ...good, properties: JSON.parse(`${'{"a":'.repeat(d)}1${'}'.repeat(d)}`) });
    assert.equal(await post(nest(124)), 200); // the body, batch and the event: 3 levels, + 124 = 127
    assert.equal(await post(nest(125)), 400);
    // Per event.
    assert.equal(await post(ev({ ...good, event: '' })), 400);
    assert.equal(await post(ev({ ...good, distinct_id: ' \t' })), 400);
    assert.equal(await post(ev({ ...good, uuid: 'not-a-uuid' })), 400);
    // The token: 401.
    for (const key of ['', 'k'.repeat(65), 'phc_é', 'phx_personal']) {
      assert.equal(await post(JSON.stringify({ api_key: key, batch: [good] })), 401, key);
    }
    // Gzip without a Content-Encoding header.
    assert.equal(await post(zlib.gzipSync(ev(good))), 200);
    const log = collector.log().batches;
    assert.equal(log.at(-1).events, 2);
    assert.ok(log.filter((b) => b.status !== 200).every((b) => b.refused));
  });
});

test('OTLP mode: the official protobuf parser takes a request and refuses an unknown field with 400', async () => {
  await withCollector(async (collector) => {
    const post = (body) => fetch(`${collector.url}/v1/logs`, { method: 'POST', body, headers: { 'Content-Type': 'application/json' } });
    const ok = await post('{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"eventName":"x","timeUnixNano":"1700000000000000000"}]}]}]}');
    assert.equal(ok.status, 200);
    const bad = await post('{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"eventname":"x"}]}]}]}');
    assert.equal(bad.status, 400);
    const [accepted, refused] = collector.log().batches;
    assert.equal(accepted.otlp.resourceLogs[0].scopeLogs[0].logRecords[0].eventName, 'x');
    assert.equal(accepted.events, 1);
    assert.match(refused.refused, /eventname/);
  });
});
