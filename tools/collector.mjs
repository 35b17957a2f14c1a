//! A local stand-in for a PostHog-compatible collector, for the demo and the end-to-end tests.
//!
//! It records every batch it receives, answers the way a test tells it to (a 429 with
//! Retry-After, a 5xx, a slow answer, a dropped connection, a batch kept but not acknowledged),
//! and serves the repository's files so a page and the built `pkg/` load from the same server.
//! Node's standard library only: it must run before `npm ci` and inside any test.
//!
//! CLI:    node tools/collector.mjs [--port N] [--host 127.0.0.1] [--root DIR]
//! Module: const c = await startCollector({ port: 0 }); c.url; c.log(); c.control.plan([...]);
//!
//! HTTP control API (also usable from a page: every response allows CORS):
//!   POST /control        {"plan":[{"status":429,"retryAfter":"2","delayMs":0,"reset":false,
//!                          "afterAccept":false,"times":1}, ...], "default":{"status":200}}
//!                        replaces the plan; `default` (kept when omitted) answers once it is used up
//!   GET  /control/log    {"batches":[entry, ...],"preflights":N}
//!                        `?since=SEQ` lists only the batches after SEQ (the demo page polls it)
//!   POST /control/reset  forgets the log, the plan and the default

import http from 'node:http';
import fs from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));

// /batch/ is PostHog's batch endpoint; /e/ (posthog-js 1.449) and /i/v0/e/ (other versions)
// are where posthog-js sends, kept so the same collector can record posthog-js in comparisons.
const BATCH_PATHS = new Set(['/batch/', '/batch', '/e/', '/i/v0/e/']);

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
 * Starts a collector. Resolves once it listens.
 * @returns {Promise<{url: string, port: number, close: () => Promise<void>,
 *   log: () => {batches: object[], preflights: number},
 *   control: {plan: (planOrConfig: object[] | {plan?: object[], default?: object}, dflt?: object) => void,
 *             reset: () => void}}>}
 */
export async function startCollector({ port = 0, host = '127.0.0.1', root = REPO_ROOT } = {}) {
  root = path.resolve(root);
  const state = { batches: [], preflights: 0, seq: 0, plan: [], default: { ...DEFAULT_ANSWER } };
  const timers = new Set();

  const control = {
    // Accepts the POST /control body, or (plan, default) as two arguments.
    plan(config, dflt) {
      if (Array.isArray(config)) config = { plan: config, default: dflt };
      const plan = config?.plan ?? [];
      if (!Array.isArray(plan)) throw new TypeError('plan must be an array');
      // Copied, because `times` is counted down as answers are used.
      state.plan = plan.map((a) => ({ ...a, times: a.times ?? 1 })).filter((a) => a.times > 0);
      if (config?.default) state.default = { ...DEFAULT_ANSWER, ...config.default };
    },
    reset() {
      state.batches = [];
      state.preflights = 0;
      state.seq = 0;
      state.plan = [];
      state.default = { ...DEFAULT_ANSWER };
    },
  };

  // The one place that decides how a batch is answered. A seeded random "chaos" mode would
  // be another source of answers here, consulted when the plan is empty.
  function nextAnswer() {
    const head = state.plan[0];
    if (!head) return state.default;
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
    if (req.method === 'POST' && BATCH_PATHS.has(pathname)) return receiveBatch(req, res, pathname);
    if (req.method === 'POST' && pathname === '/control') {
      let config;
      try {
        config = JSON.parse((await readBody(req)).toString('utf8'));
        control.plan(config);
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
    if (req.headers['content-encoding'] === 'gzip') bytes = zlib.gunzipSync(bytes);
    const text = bytes.toString('utf8');
    let body = null;
    try {
      body = JSON.parse(text);
    } catch {}

    const answer = nextAnswer();
    const status = answer.reset ? null : (answer.status ?? 200);
    const entry = {
      seq: ++state.seq,
      receivedAt: Date.now(),
      answeredAt: null,
      path: pathname,
      method: req.method,
      contentType: req.headers['content-type'] ?? null,
      origin: req.headers.origin ?? null,
      bytes: wireBytes,
      status,
      // Whether the events count as delivered: a 2xx, or an `afterAccept` answer (kept, then
      // answered with an error or a dropped connection, as when an ack is lost).
      accepted: Boolean(answer.afterAccept) || (status !== null && status >= 200 && status < 300),
      body,
      ...(body === null ? { raw: text } : {}),
      sentAt: body?.sent_at ?? null,
      events: countEvents(body),
    };
    state.batches.push(entry);

    // Recorded before the delay, so a test can see a request the client is still waiting on.
    await sleep(answer.delayMs ?? 0);
    entry.answeredAt = Date.now();
    if (answer.reset) {
      // No response at all: the client sees a network error.
      req.socket.destroy();
      return;
    }
    const headers = {};
    if (answer.retryAfter !== undefined) headers['Retry-After'] = String(answer.retryAfter);
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

  function sleep(ms) {
    if (!ms) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        timers.delete(t);
        resolve();
      }, ms);
      timers.add(t);
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

function countEvents(body) {
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
