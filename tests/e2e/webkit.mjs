//! The end-to-end harness for WebKit: Debian's WebKitGTK MiniBrowser driven by WebKitWebDriver
//! (WebDriver classic, plain HTTP spoken with node's `fetch`), on a virtual display of its own
//! (Xvfb: MiniBrowser has no headless mode), behind the same small face as harness.mjs has for
//! Chromium and firefox.mjs for Firefox, so close-cases.mjs runs in it unchanged.
//!
//!   const browser = await launchBrowser();     // Xvfb: once per file
//!   const context = await browser.newContext();  // a driver, a session, a MiniBrowser: ~1 s
//!   const page = await context.newPage();
//!   await page.goto(url);                        // resolves once the page has loaded
//!   await page.evaluate((n) => ..., 3);          // as in Playwright; promises are awaited
//!   await context.close();
//!   await browser.close();                       // kills Xvfb, the driver and MiniBrowser
//!
//! A context is a WebDriver session on a WebKitWebDriver of its own (a driver holds one
//! session at a time: "Maximum number of active sessions"), and each session is a MiniBrowser
//! process of its own started with `--automation` (without it, creating the session hangs),
//! whose website data is ephemeral: nothing (localStorage included) is shared between
//! contexts, as with Playwright's `newContext()`. A second `newPage()` in a context opens a
//! tab of the same session (same storage); every command first switches the session to its
//! page's window.
//!
//! What WebDriver classic cannot do, and so this face lacks:
//! - `context.setOffline` (no network emulation): throws, so the offline case is not run here.
//! - `context.newCDPSession` (no CDP): latency goes through firefox.mjs's startLatencyProxy
//!   (`latencyVia: 'proxy'` in close-cases.mjs).
//! - `context.addInitScript` (nothing runs before a page's own scripts): throws.
//! - `on('pageerror')` and `on('console')` see only what happens after the harness's listeners
//!   are in the page: they are (re)installed by every `evaluate` and `goto`, and what they
//!   collected is read back and dispatched by the next command on that page. An error thrown
//!   while a document loads, before the first command after its load, or while it unloads
//!   (pagehide) is not seen. Console lines are `console.log/info/warn/error/debug` calls.
//!
//! Processes: Xvfb (on the first free display, `-displayfd`) and each WebKitWebDriver are
//! started in a process group of their own (MiniBrowser and its WebKit*Process children are
//! started by the driver, in its group); `context.close()` ends its driver's group and
//! `browser.close()` every group, SIGTERM then SIGKILL, and node's exit (or its death by SIGINT,
//! SIGTERM or SIGHUP) SIGKILLs whatever is left if a test file never reached its `after` hook.
//!
//! Checked in WebKitGTK 2.50.6: http://127.0.0.1 is a secure context there
//! (`crypto.randomUUID`, Web Locks and `CompressionStream` exist); a second tab of a context
//! sees its localStorage, another context does not.

import { spawn } from 'node:child_process';
import net from 'node:net';
import { startCollector, waitFor, withCollector } from './harness.mjs';
import { startLatencyProxy, closedPortUrl } from './firefox.mjs';

export { startCollector, waitFor, withCollector, startLatencyProxy, closedPortUrl };

export const WEBDRIVER_PATH = process.env.WEBKIT_WEBDRIVER_PATH ?? '/usr/bin/WebKitWebDriver';
export const MINIBROWSER_PATH = process.env.WEBKIT_MINIBROWSER_PATH ?? '/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser';
export const XVFB_PATH = process.env.XVFB_PATH ?? '/usr/bin/Xvfb';

/** Every process group started here and not yet ended: killed at node's exit at the latest. */
const groups = new Set();
function killAll() {
  for (const pid of groups) {
    try { process.kill(-pid, 'SIGKILL'); } catch {}
  }
  groups.clear();
}
process.on('exit', killAll);
// A test runner's timeout or a ^C ends node by a signal, which skips 'exit': kill, then let the
// signal do what it would have done (a `once` listener is gone when it runs).
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    killAll();
    process.kill(process.pid, signal);
  });
}

function startGroup(cmd, args, options) {
  const child = spawn(cmd, args, { detached: true, ...options });
  groups.add(child.pid);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.once('exit', () => groups.delete(child.pid));
  return { child, exited };
}

/** SIGTERM to the group, SIGKILL after `graceMs` if its leader is still there; then waits for it. */
async function endGroup({ child, exited }, graceMs = 2_000) {
  const kill = (signal) => { try { process.kill(-child.pid, signal); } catch {} };
  if (child.exitCode === null && child.signalCode === null) {
    kill('SIGTERM');
    const timer = setTimeout(() => kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }
  // Children of the leader (MiniBrowser, its web and network processes) may outlive it.
  kill('SIGKILL');
  groups.delete(child.pid);
}

/** Xvfb on the first free display (`-displayfd`); resolves to { display: ':N', group }. */
async function startXvfb() {
  const group = startGroup(XVFB_PATH, ['-displayfd', '3', '-screen', '0', '1280x800x24', '-nolisten', 'tcp'], {
    stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  group.child.stderr.on('data', (d) => { stderr = (stderr + d).slice(-4_000); });
  try {
    const number = await new Promise((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`Xvfb gave no display within 10 s: ${stderr}`)), 10_000);
      group.child.stdio[3].on('data', (d) => {
        out += d;
        if (out.includes('\n')) (clearTimeout(timer), resolve(out.trim()));
      });
      group.exited.then((code) => (clearTimeout(timer), reject(new Error(`Xvfb exited (${code}): ${stderr}`))));
    });
    return { display: `:${number}`, group };
  } catch (err) {
    await endGroup(group);
    throw err;
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts Xvfb and returns the browser face; each context starts a WebKitWebDriver of its own
 * (on 127.0.0.1, DISPLAY set to the Xvfb): a driver holds one session at a time. Close it with
 * `browser.close()`, which ends every driver, every MiniBrowser and Xvfb.
 */
export async function launchBrowser() {
  return new WebKitBrowser(await startXvfb());
}

/** WebKitWebDriver on a free port of 127.0.0.1; resolves once it answers /status. */
async function startDriver(display) {
  const port = await freePort();
  const driver = startGroup(WEBDRIVER_PATH, [`--port=${port}`, '--host=127.0.0.1'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, DISPLAY: display },
  });
  let log = '';
  const keep = (d) => { log = (log + d).slice(-4_000); };
  driver.child.stdout.on('data', keep);
  driver.child.stderr.on('data', keep);
  driver.url = `http://127.0.0.1:${port}`;
  driver.log = () => log;
  try {
    await waitFor(async () => {
      if (driver.child.exitCode !== null) throw new Error(`WebKitWebDriver exited: ${log}`);
      return fetch(`${driver.url}/status`).then((r) => r.ok, () => false);
    }, { timeoutMs: 10_000, intervalMs: 100, message: 'WebKitWebDriver answering /status' });
    return driver;
  } catch (err) {
    await endGroup(driver);
    throw err;
  }
}

/** One WebDriver command; resolves to its `value`, throws its error with the message. */
async function command(base, method, path, body, { timeoutMs = 90_000 } = {}) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = { value: text }; }
  // WebDriver answers an error with a 4xx or 5xx status and { value: { error, message } }.
  if (!res.ok) {
    const v = json?.value ?? {};
    throw new Error(`WebDriver ${method} ${path}: ${v.error ?? res.status} ${v.message ?? text}`);
  }
  return json.value;
}

/** Playwright's Browser, as far as close-cases.mjs uses it. */
class WebKitBrowser {
  constructor(xvfb) {
    this.display = xvfb.display;
    this._xvfb = xvfb;
    this._contexts = new Set();
  }

  /**
   * A new WebDriver session on a driver of its own: a MiniBrowser of its own, with ephemeral
   * storage.
   */
  async newContext() {
    const driver = await startDriver(this.display);
    try {
      const value = await command(driver.url, 'POST', '/session', {
        capabilities: {
          alwaysMatch: {
            browserName: 'MiniBrowser',
            pageLoadStrategy: 'normal',
            timeouts: { script: 60_000, pageLoad: 30_000, implicit: 0 },
            'webkitgtk:browserOptions': { binary: MINIBROWSER_PATH, args: ['--automation'] },
          },
        },
      }, { timeoutMs: 30_000 });
      const context = new WebKitContext(this, driver, value.sessionId, value.capabilities);
      this._contexts.add(context);
      return context;
    } catch (err) {
      err.message += `\nWebKitWebDriver: ${driver.log()}`;
      await endGroup(driver);
      throw err;
    }
  }

  /** "MiniBrowser/2.50.6" once a context was made. */
  version() {
    return this._version ?? 'MiniBrowser';
  }

  /** Ends every session and its driver (and any MiniBrowser left), then Xvfb. */
  async close() {
    await Promise.all([...this._contexts].map((c) => c.close()));
    await endGroup(this._xvfb.group);
  }
}

/** Playwright's BrowserContext: newPage, pages, close (setOffline and addInitScript throw). */
class WebKitContext {
  constructor(browser, driver, id, capabilities) {
    this._browser = browser;
    this._driver = driver;
    this.id = id;
    this.capabilities = capabilities;
    browser._version ??= `${capabilities?.browserName}/${capabilities?.browserVersion}`;
    this._pages = [];
    this._current = null; // the window handle the session is switched to
    this._queue = Promise.resolve();
    this._closed = false;
  }

  /** Runs `fn` after every earlier command of this session: a switch and its command stay together. */
  _serial(fn) {
    const run = this._queue.then(fn);
    this._queue = run.catch(() => {});
    return run;
  }

  _cmd(method, path, body, options) {
    return command(this._driver.url, method, `/session/${this.id}${path}`, body, options);
  }

  async newPage() {
    return this._serial(async () => {
      let handle;
      if (this._pages.length === 0) {
        handle = await this._cmd('GET', '/window');
      } else {
        // New Window needs the session on an open window: not the one a closed page had.
        const open = this.pages()[0];
        if (this._current === null && open) {
          await this._cmd('POST', '/window', { handle: open.handle });
          this._current = open.handle;
        }
        handle = (await this._cmd('POST', '/window/new', { type: 'tab' })).handle;
      }
      const page = new WebKitPage(this, handle);
      this._pages.push(page);
      return page;
    });
  }

  pages() {
    return this._pages.filter((p) => !p._closed);
  }

  setOffline() {
    throw new Error('WebKit over WebDriver classic cannot emulate offline');
  }

  addInitScript() {
    throw new Error('WebKit over WebDriver classic has no init scripts');
  }

  newCDPSession() {
    throw new Error('WebKit has no CDP: use latencyVia "proxy"');
  }

  /** Deletes the session (its MiniBrowser closes) and ends its driver. Never throws. */
  async close() {
    if (this._closed) return;
    this._closed = true;
    this._browser._contexts.delete(this);
    await this._queue;
    await this._cmd('DELETE', '', undefined, { timeoutMs: 15_000 }).catch(() => {});
    await endGroup(this._driver);
  }
}

// Installed in the page by every command (idempotent): collects uncaught errors, unhandled
// rejections and console calls until the harness drains them.
const INSTALL = `
  if (!window.__spoolWebKit) {
    const box = window.__spoolWebKit = { errors: [], console: [] };
    addEventListener('error', (e) => box.errors.push(e.error instanceof Error ? e.error.message + '\\n' + e.error.stack : String(e.error ?? e.message)));
    addEventListener('unhandledrejection', (e) => box.errors.push('unhandled rejection: ' + (e.reason instanceof Error ? e.reason.message + '\\n' + e.reason.stack : String(e.reason))));
    for (const type of ['log', 'info', 'warn', 'error', 'debug']) {
      const original = console[type];
      console[type] = function (...args) {
        try { box.console.push({ type: type === 'warn' ? 'warning' : type, text: args.map(String).join(' ') }); } catch {}
        return original.apply(this, args);
      };
    }
  }
  const drain = () => {
    const box = window.__spoolWebKit;
    const out = { errors: box.errors.splice(0), console: box.console.splice(0) };
    return out;
  };
`;

/**
 * Playwright's Page over one window of a WebDriver session: `evaluate(fn, arg)` (execute/async;
 * a returned promise is awaited, a throw or rejection rejects), `goto(url)` (navigate: resolves
 * once the new document has loaded), `url()`, `reload()`, `on('pageerror' | 'console', fn)`
 * (see the file's head), `close()`, `context()`, `isClosed()`.
 */
class WebKitPage {
  constructor(context, handle) {
    this._context = context;
    this.handle = handle;
    this._handlers = { pageerror: [], console: [] };
    this._closed = false;
  }

  context() {
    return this._context;
  }

  isClosed() {
    return this._closed;
  }

  on(event, handler) {
    (this._handlers[event] ??= []).push(handler);
    return this;
  }

  _dispatch(drained) {
    for (const e of drained?.errors ?? []) for (const h of this._handlers.pageerror) h(new Error(e));
    for (const m of drained?.console ?? []) {
      const message = { type: () => m.type, text: () => m.text };
      for (const h of this._handlers.console) h(message);
    }
  }

  /** A command on this page's window, the session switched to it first. */
  _onPage(method, path, body, options) {
    const c = this._context;
    return c._serial(async () => {
      if (c._current !== this.handle) {
        await c._cmd('POST', '/window', { handle: this.handle });
        c._current = this.handle;
      }
      return c._cmd(method, path, body, options);
    });
  }

  async evaluate(fn, arg) {
    const source = typeof fn === 'function' ? `(${fn})` : `(() => (${fn}))`;
    const script = `${INSTALL}
      const done = arguments[arguments.length - 1];
      const args = Array.prototype.slice.call(arguments, 0, -1);
      Promise.resolve()
        .then(() => ${source}.apply(null, args))
        .then((value) => done({ ok: true, undefined: value === undefined, value: value === undefined ? null : value, drained: drain() }),
              (e) => done({ ok: false, failure: String(e && e.stack ? e.message + '\\n' + e.stack : e), drained: drain() }));`;
    const result = await this._onPage('POST', '/execute/async', { script, args: arguments.length > 1 ? [arg] : [] });
    this._dispatch(result?.drained);
    if (!result?.ok) throw new Error(`page.evaluate: ${result?.failure}`);
    return result.undefined ? undefined : result.value;
  }

  /** Reads back what the listeners collected (and installs them in a new document). */
  async _drain() {
    const drained = await this._onPage('POST', '/execute/sync', { script: `${INSTALL} return drain();`, args: [] }).catch(() => null);
    this._dispatch(drained);
  }

  async goto(url, { timeout = 30_000 } = {}) {
    await this._drain();
    await this._onPage('POST', '/url', { url }, { timeoutMs: timeout + 5_000 });
    await this._drain();
    return null;
  }

  async reload({ timeout = 30_000 } = {}) {
    await this._drain();
    await this._onPage('POST', '/refresh', {}, { timeoutMs: timeout + 5_000 });
    await this._drain();
    return null;
  }

  /** The URL of the current document (a command: WebDriver has no events to track it). */
  url() {
    return this._onPage('GET', '/url');
  }

  /**
   * WebDriver's Close Window. WebKitGTK 2.50.6 fires `visibilitychange` (hidden), `pagehide`
   * (not persisted) and `unload`, but no `beforeunload`: Playwright's `runBeforeUnload` has no
   * equivalent here. The session ends with its last window: keep another page open.
   */
  async close() {
    if (this._closed) return;
    this._closed = true;
    await this._onPage('DELETE', '/window').catch(() => {});
    this._context._current = null;
  }
}
