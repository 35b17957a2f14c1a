//! A local stand-in for a PostHog-compatible collector, for the demo and the end-to-end tests.
//!
//! It records every batch it receives, answers the way a test tells it to (a 429 with
//! Retry-After, a 5xx, a slow answer, a dropped connection, a batch kept but not acknowledged),
//! and serves the repository's files so a page and the built `pkg/` load from the same server.
//! Node's standard library only: it must run before `npm ci` and inside any test.
//!
//! CLI:    node tools/collector.mjs [--port N] [--host 127.0.0.1] [--root DIR]
//! Paths: /batch/ takes anything; /strict/batch/ applies PostHog capture's rules (see
//!         posthogRefusal); /v1/logs parses OTLP/HTTP JSON logs with the official protobuf
//!         bindings (python3 tools/otlp_parse.py) and refuses what they refuse.
//! Module: const c = await startCollector({ port: 0 }); c.url; c.log(); c.control.plan([...]);
//!         c.control.chaos({ seed: 42, weights: { ok: 90, e503: 10 } });
//!
//! HTTP control API (also usable from a page: every response allows CORS):
//!   POST /control        {"plan":[{"status":429,"retryAfter":"2","delayMs":0,"reset":false,
//!                          "afterAccept":false,"hold":false,"times":1}, ...], "default":{"status":200}}
//!                        replaces the plan; `default` (kept when omitted) answers once it is used up.
//!                        `hold`: the answer waits `delayMs` or until the plan is set again (or
//!                        reset), whichever comes first: a stalled collector a page can end
//!   POST /control        {"chaos":{"seed":42,"weights":{"ok":60,"e503":8,...},"stallMs":15000}}
//!                        seeded random answers once the plan is used up (see CHAOS_FATES);
//!                        {"chaos":null} turns them off. A body with only `chaos` keeps the plan
//!   GET  /control/log    {"batches":[entry, ...],"preflights":N}
//!                        `?since=SEQ` lists only the batches after SEQ (the demo page polls it)
//!                        An entry has receivedAt, answeredAt and closedAt (the connection closed
//!                        before an answer), the status, accepted, the body; `fate` when chaos
//!                        drew it; `retryAfter` and `retryAfterUntil` (the ms it names) if sent;
//!                        `bytes` as received and `jsonBytes` decoded (gunzipped, and posthog-js's
//!                        `data=<base64>` form unwrapped); `fetchMode` (Sec-Fetch-Mode: `no-cors`
//!                        for a beacon)
//!   POST /control        {"poison":"marker"}: any batch body containing the marker is refused
//!                        (400) before the plan is consulted; {"poison":null} turns it off
//!   POST /control/reset  forgets the log, the plan, the default, chaos and poison

import http from 'node:http';
import fs from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));

// /batch/ is PostHog's batch endpoint; /e/ (posthog-js 1.449) and /i/v0/e/ (other versions)
// are where posthog-js sends, kept so the same collector can record posthog-js in comparisons.
const BATCH_PATHS = new Set(['/batch/', '/batch', '/e/', '/i/v0/e/']);
// The strict PostHog mode: the batch API with the rules of PostHog's capture service
// (rust/capture/ in the PostHog repository) applied, see `posthogRefusal`.
const STRICT_PATHS = new Set(['/strict/batch/']);
// An OpenTelemetry Collector's OTLP/HTTP logs endpoint: every body is parsed by the official
// protobuf bindings (tools/otlp_parse.py) and refused with 400 if they refuse it.
const OTLP_PATHS = new Set(['/v1/logs']);

const CONTENT_TYPES = {
  '.wasm': 'application/wasm',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.txt': 'text/plain; charset=utf-8',
  '.ts': 'text/plain; charset=utf-8',
};

const DEFAULT_ANSWER = Object.freeze({ status: 200, delayMs: 0 });

/**
 * What chaos mode can draw for a batch, by the name its weight goes under, and how it answers.
 * A log entry records the name drawn as `fate`.
 */
export const CHAOS_FATES = Object.freeze({
  ok: { status: 200 },
  badRequest: { status: 400 },
  // 429 with `Retry-After: N` (delta-seconds, N from 0 to retryAfterMaxSeconds).
  retryAfterSeconds: { status: 429 },
  // 503 with `Retry-After: <HTTP-date>`, whole seconds, at most retryAfterMaxSeconds ahead.
  retryAfterDate: { status: 503 },
  e500: { status: 500 },
  e503: { status: 503 },
  // Kept (accepted), then no answer for `stallMs`: past the client's request timeout, so the
  // client gives up and retries an event the collector already has. A 200 if it is still there.
  stall: { status: 200, afterAccept: true },
  // The connection is destroyed without an answer: a network error for the client.
  reset: { reset: true },
  // Kept (accepted), then answered 500: an acknowledgment lost.
  acceptThen500: { status: 500, afterAccept: true },
});

const DEFAULT_CHAOS = Object.freeze({ stallMs: 15_000, retryAfterMaxSeconds: 3 });

/**
 * Starts a collector. Resolves once it listens.
 * @returns {Promise<{url: string, port: number, close: () => Promise<void>,
 *   log: () => {batches: object[], preflights: number},
 *   control: {plan: (planOrConfig: object[] | {plan?: object[], default?: object}, dflt?: object) => void,
 *             chaos: (config: {seed?: number, weights: object, stallMs?: number,
 *                              retryAfterMaxSeconds?: number} | null) => void,
 *             reset: () => void}}>}
 */
export async function startCollector({ port = 0, host = '127.0.0.1', root = REPO_ROOT } = {}) {
  root = path.resolve(root);
  const state = { batches: [], preflights: 0, seq: 0, plan: [], default: { ...DEFAULT_ANSWER }, chaos: null };
  const timers = new Set();
  // Ends the wait of every answer held (`hold`): called when the plan is set again.
  const held = new Set();
  const releaseHeld = () => {
    for (const release of held) release();
  };

  const control = {
    // Accepts the POST /control body, or (plan, default) as two arguments.
    plan(config, dflt) {
      if (Array.isArray(config)) config = { plan: config, default: dflt };
      const plan = config?.plan ?? [];
      if (!Array.isArray(plan)) throw new TypeError('plan must be an array');
      // Copied, because `times` is counted down as answers are used.
      state.plan = plan.map((a) => ({ ...a, times: a.times ?? 1 })).filter((a) => a.times > 0);
      if (config?.default) state.default = { ...DEFAULT_ANSWER, ...config.default };
      releaseHeld();
    },
    // Seeded random answers once the plan is used up: { seed, weights: { fate: weight },
    // stallMs, retryAfterMaxSeconds }. The same seed draws the same fates in the same order of
    // arrival. null (or undefined) turns chaos off.
    chaos(config) {
      state.chaos = config == null ? null : makeChaos(config);
    },
    // A collector with rules stricter than spool knows: any batch body containing `marker`
    // (a string) is refused with 400, whatever the plan says. null turns it off.
    poison(marker) {
      state.poison = marker ?? null;
    },
    reset() {
      state.batches = [];
      state.preflights = 0;
      state.seq = 0;
      state.plan = [];
      state.default = { ...DEFAULT_ANSWER };
      state.chaos = null;
      state.poison = null;
      releaseHeld();
    },
  };

  // The one place that decides how a batch is answered: the plan first, then chaos if it is
  // on, then the default.
  function nextAnswer() {
    const head = state.plan[0];
    if (!head) return state.chaos ? state.chaos.draw() : state.default;
    if (--head.times <= 0) state.plan.shift();
    return head;
  }

  // `since` (a seq) leaves out the batches a poller has already seen.
  const log = (since = 0) =>
    structuredClone({ batches: state.batches.filter((b) => b.seq > since), preflights: state.preflights });

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err) => {
      if (!res.headersSent) send(res, 500, { error: String(err?.message ?? err) });
      else res.destroy();
    });
  });

  async function handle(req, res) {
    setCors(req, res);
    const { pathname, searchParams } = new URL(req.url, 'http://collector');

    if (req.method === 'OPTIONS') {
      state.preflights++;
      return send(res, 204);
    }
    if (req.method === 'POST' && (BATCH_PATHS.has(pathname) || STRICT_PATHS.has(pathname) || OTLP_PATHS.has(pathname))) {
      return receiveBatch(req, res, pathname);
    }
    if (req.method === 'POST' && pathname === '/control') {
      let config;
      try {
        config = JSON.parse((await readBody(req)).toString('utf8'));
        // A body with only `chaos` leaves the plan as it is; any other body sets the plan.
        const chaosOnly = config !== null && typeof config === 'object' && 'chaos' in config &&
          !('plan' in config) && !('default' in config);
        if (config !== null && typeof config === 'object' && 'chaos' in config) control.chaos(config.chaos);
        if (config !== null && typeof config === 'object' && 'poison' in config) {
          control.poison(config.poison);
          if (!('plan' in config) && !('default' in config)) return send(res, 200, { ok: true });
        }
        if (!chaosOnly) control.plan(config);
      } catch (err) {
        return send(res, 400, { error: String(err.message) });
      }
      return send(res, 200, { ok: true });
    }
    if (req.method === 'POST' && pathname === '/control/reset') {
      await readBody(req);
      control.reset();
      return send(res, 200, { ok: true });
    }
    if (req.method === 'GET' && pathname === '/control/log') {
      return send(res, 200, log(Number(searchParams.get('since')) || 0));
    }
    if (req.method === 'GET' || req.method === 'HEAD') return serveStatic(req, res, pathname);
    return send(res, req.method === 'POST' ? 404 : 405, { error: 'not found' });
  }

  async function receiveBatch(req, res, pathname) {
    let bytes = await readBody(req);
    const wireBytes = bytes.length;
    const strict = STRICT_PATHS.has(pathname);
    const otlp = OTLP_PATHS.has(pathname);
    // PostHog's capture recognizes gzip by its magic bytes, header or not (spool's gzip
    // PostHog bodies carry no header, to stay CORS-simple).
    const gzipped = req.headers['content-encoding'] === 'gzip' || (bytes[0] === 0x1f && bytes[1] === 0x8b);
    if (gzipped) bytes = zlib.gunzipSync(bytes);
    const text = unwrapPosthogForm(bytes.toString('utf8'), req.url);
    let body = null;
    try {
      body = JSON.parse(text);
    } catch {}

    // What the real parser refuses: {status, reason}, answered instead of the plan.
    let refusal = null;
    let otlpRequest = null;
    if (strict) refusal = posthogRefusal(text, body);
    if (!refusal && state.poison && text.includes(state.poison)) refusal = { status: 400, reason: 'poisoned' };
    if (otlp) {
      const parsed = await otlpParser().parse(text);
      if (parsed.ok) otlpRequest = JSON.parse(parsed.request);
      else refusal = { status: 400, reason: parsed.error };
    }
    const answer = refusal ? { status: refusal.status, body: { error: refusal.reason } } : nextAnswer();
    const status = answer.reset ? null : (answer.status ?? 200);
    const entry = {
      seq: ++state.seq,
      receivedAt: Date.now(),
      answeredAt: null,
      // When the connection closed before an answer went out (the client gave up, or a reset).
      closedAt: null,
      path: pathname,
      // The request target with its query string, which a test may use to tag requests.
      url: req.url,
      method: req.method,
      contentType: req.headers['content-type'] ?? null,
      origin: req.headers.origin ?? null,
      bytes: wireBytes,
      // What the events' JSON weighs, as the collector decodes it.
      jsonBytes: Buffer.byteLength(text),
      gzip: gzipped,
      // `no-cors` for a beacon (sendBeacon with a text/plain body); a fetch, keepalive or not,
      // says `cors` or `same-origin`.
      fetchMode: req.headers['sec-fetch-mode'] ?? null,
      status,
      // Whether the events count as delivered: a 2xx, or an `afterAccept` answer (kept, then
      // answered with an error or a dropped connection, as when an ack is lost).
      accepted: Boolean(answer.afterAccept) || (status !== null && status >= 200 && status < 300),
      body,
      ...(body === null ? { raw: text } : {}),
      // As PostHog's capture reads it: the body's, else the URL's `_` (ms since the epoch,
      // what a body packed ahead of time goes with).
      sentAt: body?.sent_at ?? sentAtParam(req.url),
      events: countEvents(body),
      ...(answer.fate ? { fate: answer.fate } : {}),
      ...(refusal ? { refused: refusal.reason } : {}),
      // The request as the official protobuf bindings read it (MessageToJson), for OTLP.
      ...(otlp ? { otlp: otlpRequest } : {}),
    };
    state.batches.push(entry);
    res.once('close', () => {
      if (!res.writableFinished && entry.closedAt === null) entry.closedAt = Date.now();
    });

    // Recorded before the delay, so a test can see a request the client is still waiting on.
    if (answer.fate === 'stall') {
      // A chaos stall ends early if the client gives up: it is gone, and nothing is answered.
      await sleep(answer.delayMs, res);
      if (entry.closedAt !== null) return;
    } else if (answer.hold) {
      await sleep(answer.delayMs, res, held);
    } else {
      await sleep(answer.delayMs ?? 0);
    }
    entry.answeredAt = Date.now();
    if (answer.reset) {
      // No response at all: the client sees a network error.
      req.socket.destroy();
      return;
    }
    const headers = {};
    let retryAfter = answer.retryAfter;
    if (answer.retryAfterDateIn !== undefined) {
      // Dated from the answer's own time, rounded up to the whole second an HTTP-date can name.
      retryAfter = new Date(Math.ceil((entry.answeredAt + answer.retryAfterDateIn * 1000) / 1000) * 1000).toUTCString();
    }
    if (retryAfter !== undefined) {
      headers['Retry-After'] = String(retryAfter);
      entry.retryAfter = String(retryAfter);
      // The instant it names, by this collector's clock (ms since the epoch), or null.
      entry.retryAfterUntil = retryAfterDeadline(String(retryAfter), entry.answeredAt);
    }
    const payload = answer.body ?? (status < 300 ? { status: 1 } : { error: `planned ${status}` });
    send(res, status, payload, headers);
  }

  async function serveStatic(req, res, pathname) {
    if (pathname === '/') return send(res, 302, null, { Location: '/www/' });
    let decoded;
    try {
      decoded = decodeURIComponent(pathname);
    } catch {
      return send(res, 400, { error: 'bad path' });
    }
    const file = path.resolve(root, '.' + path.posix.normalize('/' + decoded));
    // normalize() already folds `..`, but a resolved path outside root must never be read.
    if (file !== root && !file.startsWith(root + path.sep)) return send(res, 404, { error: 'not found' });

    let target = file;
    let info = await fs.stat(target).catch(() => null);
    if (info?.isDirectory()) {
      // Relative links in a page at /www only work from /www/.
      if (!pathname.endsWith('/')) return send(res, 302, null, { Location: pathname + '/' });
      target = path.join(file, 'index.html');
      info = await fs.stat(target).catch(() => null);
    }
    if (!info?.isFile()) return send(res, 404, { error: 'not found' });

    const data = await fs.readFile(target);
    res.writeHead(200, {
      'Content-Type': CONTENT_TYPES[path.extname(target).toLowerCase()] ?? 'application/octet-stream',
      'Content-Length': data.length,
      // Always fresh: the demo and the tests reload pkg/ after every build.
      'Cache-Control': 'no-store',
    });
    res.end(req.method === 'HEAD' ? undefined : data);
  }

  // Resolves after `ms`, or as soon as `res` closes when given, or when `releases` (a Set)
  // calls what it is given.
  function sleep(ms, res, releases) {
    if (!ms) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        timers.delete(t);
        res?.off('close', done);
        releases?.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      timers.add(t);
      res?.once('close', done);
      releases?.add(done);
    });
  }

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  const actualPort = server.address().port;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${actualPort}`;

  return {
    url,
    port: actualPort,
    log,
    control,
    async close() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      // Browsers keep connections open; without this, close() waits for them to time out.
      server.closeAllConnections();
      await new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

// Every response allows any origin, so pages on another port (another origin) can send and can
// read Retry-After.
function setCors(req, res) {
  const origin = req.headers.origin;
  res.setHeader('Access-Control-Allow-Origin', origin ?? '*');
  if (origin) res.setHeader('Vary', 'Origin');
  res.setHeader('Access-Control-Allow-Headers', '*');
  res.setHeader('Access-Control-Allow-Methods', 'POST, GET, OPTIONS');
  res.setHeader('Access-Control-Expose-Headers', 'Retry-After');
  // Browsers cache preflights (Chromium: 5 s by default), which would hide them from the count.
  res.setHeader('Access-Control-Max-Age', '0');
}

function send(res, status, payload = null, headers = {}) {
  const body = payload === null ? '' : JSON.stringify(payload);
  res.writeHead(status, {
    ...headers,
    ...(body ? { 'Content-Type': 'application/json' } : {}),
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
  });
  res.end(body);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/**
 * A chaos source from its config: `draw()` returns the next answer, with `fate` set. Throws a
 * TypeError naming what is wrong.
 */
function makeChaos({ seed = 1, weights, stallMs = DEFAULT_CHAOS.stallMs,
                     retryAfterMaxSeconds = DEFAULT_CHAOS.retryAfterMaxSeconds } = {}) {
  if (!Number.isInteger(seed)) throw new TypeError('chaos.seed must be an integer');
  if (!weights || typeof weights !== 'object') throw new TypeError('chaos.weights must be an object');
  const table = [];
  for (const [fate, weight] of Object.entries(weights)) {
    if (!(fate in CHAOS_FATES)) {
      throw new TypeError(`chaos.weights.${fate}: unknown fate (one of ${Object.keys(CHAOS_FATES).join(', ')})`);
    }
    if (!Number.isFinite(weight) || weight < 0) throw new TypeError(`chaos.weights.${fate} must be a number >= 0`);
    if (weight > 0) table.push([fate, weight]);
  }
  const total = table.reduce((sum, [, w]) => sum + w, 0);
  if (total <= 0) throw new TypeError('chaos.weights must give some fate a weight above 0');
  if (!Number.isFinite(stallMs) || stallMs < 0) throw new TypeError('chaos.stallMs must be a number >= 0');
  if (!Number.isInteger(retryAfterMaxSeconds) || retryAfterMaxSeconds < 0) {
    throw new TypeError('chaos.retryAfterMaxSeconds must be a whole number >= 0');
  }
  const random = mulberry32(seed);
  return {
    draw() {
      let r = random() * total;
      let fate = table[table.length - 1][0];
      for (const [name, w] of table) {
        if (r < w) {
          fate = name;
          break;
        }
        r -= w;
      }
      const answer = { ...CHAOS_FATES[fate], fate };
      const seconds = () => Math.floor(random() * (retryAfterMaxSeconds + 1));
      if (fate === 'retryAfterSeconds') answer.retryAfter = String(seconds());
      // The date is written when the answer goes out; rounding up to a whole second can add
      // up to one, so it is drawn one lower (never below 0).
      if (fate === 'retryAfterDate') answer.retryAfterDateIn = Math.max(0, seconds() - 1);
      if (fate === 'stall') answer.delayMs = stallMs;
      return answer;
    },
  };
}

/** mulberry32: a small seeded PRNG with 32 bits of state; returns floats in [0, 1). */
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The instant (ms) a Retry-After value names, answered at `answeredAt`; null if unreadable. */
function retryAfterDeadline(value, answeredAt) {
  if (/^\s*\d+\s*$/.test(value)) return answeredAt + Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : at;
}

/**
 * Why PostHog's capture service would refuse this batch body, or null. From its source
 * (rust/capture/): serde_json refuses lone surrogate escapes and nesting past its recursion
 * limit (400 for the whole request); the token (`api_key`) must be non-empty, at most 64
 * characters, ASCII, and not a personal `phx_` key (401); every event needs a non-empty
 * `event`, a `distinct_id` that is not blank after trimming, and a parseable `uuid` if one is
 * given (400 for the whole request).
 */
export function posthogRefusal(text, body) {
  const json = serdeJsonRefusal(text);
  if (json) return { status: 400, reason: json };
  if (body === null || typeof body !== 'object') return { status: 400, reason: 'not a JSON object' };
  const token = body.api_key ?? body.token;
  if (typeof token !== 'string' || token.length === 0) return { status: 401, reason: 'token: empty' };
  if (token.length > 64) return { status: 401, reason: 'token: too long' };
  if (!/^[\x00-\x7f]*$/.test(token)) return { status: 401, reason: 'token: not ASCII' };
  if (token.startsWith('phx_')) return { status: 401, reason: 'token: personal API key' };
  const events = Array.isArray(body.batch) ? body.batch : [body];
  for (const e of events) {
    if (typeof e?.event !== 'string' || e.event.length === 0) return { status: 400, reason: 'event: empty name' };
    const id = e.distinct_id ?? e.properties?.distinct_id;
    if (id === undefined || id === null || String(id).trim() === '') return { status: 400, reason: 'distinct_id: blank' };
    if (e.uuid !== undefined && !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(e.uuid)) {
      return { status: 400, reason: 'uuid: unparseable' };
    }
  }
  return null;
}

/** serde_json's nesting limit: it refuses the 128th level (de.rs, remaining_depth: 128). */
const SERDE_JSON_MAX_NESTING = 127;

/**
 * What serde_json refuses that JSON.parse takes: a lone surrogate escape (`\ud83d` not followed
 * by a low one, or a low one alone) and nesting deeper than 127; null if neither.
 */
export function serdeJsonRefusal(text) {
  let depth = 0;
  let inString = false;
  const hex = (i) => (/^[0-9a-fA-F]{4}$/.test(text.slice(i, i + 4)) ? parseInt(text.slice(i, i + 4), 16) : -1);
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '"') inString = false;
      else if (c === '\\') {
        if (text[i + 1] === 'u') {
          const first = hex(i + 2);
          if (first >= 0xd800 && first <= 0xdbff) {
            const second = text.slice(i + 6, i + 8) === '\\u' ? hex(i + 8) : -1;
            if (second < 0xdc00 || second > 0xdfff) return `lone leading surrogate in hex escape at ${i}`;
            i += 11;
            continue;
          }
          if (first >= 0xdc00 && first <= 0xdfff) return `lone trailing surrogate in hex escape at ${i}`;
          i += 5;
        } else {
          i += 1;
        }
      }
    } else if (c === '"') {
      inString = true;
    } else if (c === '{' || c === '[') {
      if (++depth > SERDE_JSON_MAX_NESTING) return 'recursion limit exceeded';
    } else if (c === '}' || c === ']') {
      depth--;
    }
  }
  return null;
}

/** One parser process per collector process, started on the first OTLP body. */
let parser;
function otlpParser() {
  if (parser) return parser;
  const child = spawn('python3', [fileURLToPath(new URL('./otlp_parse.py', import.meta.url))], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  child.unref();
  child.stdout.unref?.();
  child.stdin.unref?.();
  const waiting = [];
  let buffered = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk) => {
    buffered += chunk;
    let nl;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      waiting.shift()?.(JSON.parse(line));
    }
  });
  parser = {
    // The body goes base64-encoded, one per line, so its bytes reach the parser as they came.
    parse(text) {
      return new Promise((resolve) => {
        waiting.push(resolve);
        child.stdin.write(Buffer.from(text, 'utf8').toString('base64') + '\n');
      });
    },
  };
  return parser;
}

/**
 * posthog-js's form body, `data=<JSON or base64 of it>` (what it sends with sendBeacon, and with
 * `compression=base64` in the URL), unwrapped to its JSON; any other text as it is.
 */
function unwrapPosthogForm(text, url) {
  if (!text.startsWith('data=')) return text;
  const data = decodeURIComponent(text.slice(5).replace(/\+/g, ' '));
  if (/[?&]compression=base64/.test(url) || !/^[[{]/.test(data)) return Buffer.from(data, 'base64').toString('utf8');
  return data;
}

/** The send time a request's URL carries as `_` (ms since the epoch), as ISO 8601; null if none. */
function sentAtParam(url) {
  const ms = Number(new URL(url, 'http://collector').searchParams.get('_'));
  return ms > 0 ? new Date(ms).toISOString() : null;
}

function countEvents(body) {
  if (Array.isArray(body?.resourceLogs)) {
    return body.resourceLogs.flatMap((r) => r.scopeLogs ?? []).flatMap((s) => s.logRecords ?? []).length;
  }
  if (Array.isArray(body?.batch)) return body.batch.length;
  if (Array.isArray(body)) return body.length;
  return body && typeof body === 'object' && 'event' in body ? 1 : 0;
}

// CLI: one line on stdout with the URL (scripts wait for it), then serve until killed.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const opt = (name, fallback) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
  };
  const collector = await startCollector({
    port: Number(opt('port', 0)),
    host: opt('host', '127.0.0.1'),
    root: opt('root', REPO_ROOT),
  });
  console.log(`collector listening on ${collector.url}`);
  const stop = () => collector.close().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
