// The JavaScript half of spool's browser shell: the few things shorter written in JavaScript
// than bound from Rust (sending a request and reading its answer, building plain objects).
// No policy lives here: what to send and when is decided by the engine in Rust.
// Only globals are used (fetch, navigator, Request, AbortController, Headers, console), so it
// runs in a page, a Web Worker and an edge runtime alike.

// Firefox before 133 has no keepalive fetch; sendBeacon is the way out there.
const KEEPALIVE_FETCH = typeof Request == "function" && "keepalive" in Request.prototype;

// The status reported for a beacon the browser accepted: 202 Accepted, since it is queued,
// never answered (sendBeacon is fire-and-forget).
const BEACON_QUEUED = 202;

// What the exporter's one callback, `input(what, ...)`, is told: the values of `Input` in
// shell.rs. One callback for every kind of input costs the wasm one closure shim, not five.
const ANSWER = 0;
const WAKE = 1;
const SOON = 2;
const HIDDEN = 3;
const VISIBLE = 4;

// `input(what)` for the inputs that carry nothing: the id and status must still be numbers,
// which wasm-bindgen's debug glue (in `wasm-pack test`) checks.
const tell = (input, what) => input(what, 0, 0);

/**
 * POSTs `body` (a string: CORS-simple `text/plain`, so no preflight) to `url`, with `headers`
 * (the user's, or undefined for a keepalive request: a custom header forces a preflight, which
 * cannot finish while a page unloads). Calls `input(ANSWER, id, status, retryAfter, error, body)`
 * exactly once (`body` only for a 2xx answer to an `application/json` request) and never synchronously: `status` 0 with `error` for a network error. Where
 * keepalive fetch is missing or throws, falls back to `navigator.sendBeacon`. Returns the
 * request's AbortController, or undefined.
 */
export function post(url, body, contentType, headers, keepalive, id, input) {
  const answer = (...outcome) => input(ANSWER, id, ...outcome);
  const later = (status, error) => void Promise.resolve().then(() => answer(status, undefined, error));
  if (keepalive && !KEEPALIVE_FETCH) return beacon(url, body, later);
  const controller = typeof AbortController == "function" ? new AbortController() : undefined;
  const init = { method: "POST", body, headers: { ...headers, "Content-Type": contentType } };
  if (keepalive) init.keepalive = true;
  if (controller) init.signal = controller.signal;
  let sent;
  try {
    sent = fetch(url, init);
  } catch (e) {
    if (keepalive) return beacon(url, body, later);
    return void later(0, message(e));
  }
  sent.then(
    (response) => {
      // A cross-origin response shows Retry-After only if the collector sends
      // Access-Control-Expose-Headers: Retry-After.
      const retryAfter = response.headers.get("Retry-After") ?? undefined;
      // An OTLP (application/json) 2xx may carry a partialSuccess the engine reads.
      if (response.ok && contentType == "application/json") {
        return response.text().then(
          (text) => answer(response.status, retryAfter, undefined, text),
          () => answer(response.status, retryAfter, undefined),
        );
      }
      answer(response.status, retryAfter, undefined);
      // The body is not read: let the connection go (edge runtimes warn about unread bodies).
      response.body?.cancel().catch(() => {});
    },
    (e) => answer(0, undefined, message(e)),
  );
  return controller;
}

function beacon(url, body, later) {
  let queued = false;
  try {
    queued = navigator.sendBeacon(url, body);
  } catch {
    return void later(0, "no keepalive fetch and no sendBeacon here");
  }
  later(queued ? BEACON_QUEUED : 0, queued ? undefined : "sendBeacon refused the body");
}

/** Calls `input(WAKE)` in `delay` ms; returns the timer for `disarm`. */
export function arm(input, delay) {
  return setTimeout(() => tell(input, WAKE), delay);
}

/** Cancels a timer `arm` started (nothing happens if it has fired). */
export function disarm(timer) {
  clearTimeout(timer);
}

/** Calls `input(SOON)` in a microtask: once the current task's code returns, before anything
 * else (a timer, an event, page teardown) can run. */
export function soon(input) {
  queueMicrotask(() => tell(input, SOON));
}

// Fired on `window` when the page is unloaded or put into the back/forward cache; in some
// navigations before `visibilitychange`, so it alone must count as hidden.
const PAGE_HIDE = "pagehide";

/**
 * Calls `input(HIDDEN)` when the page is hidden or closed (`visibilitychange` to hidden,
 * `pagehide`) and `input(VISIBLE)` when it is back (`visibilitychange` to visible, `pageshow`
 * after a back/forward-cache restore). Returns a function that removes the listeners, or
 * undefined where there is no page (a Web Worker, an edge runtime).
 */
export function listen(input) {
  const page = typeof window == "object" ? window : undefined;
  const document = page?.document;
  if (!document) return undefined;
  const listener = (event) =>
    tell(input, event.type == PAGE_HIDE || document.visibilityState == "hidden" ? HIDDEN : VISIBLE);
  const each = (method) => {
    document[method]("visibilitychange", listener);
    page[method](PAGE_HIDE, listener);
    page[method]("pageshow", listener);
  };
  each("addEventListener");
  return () => each("removeEventListener");
}

// "00" to "ff", for uuidText.
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/**
 * The canonical text of a uuid given as four 32-bit words, most significant first. Built
 * here rather than passed as a string from wasm: decoding 36 bytes with TextDecoder cost about
 * a fifth of a whole `capture` (measured with bench/profile.mjs).
 */
export function uuidText(a, b, c, d) {
  const word = (w) => HEX[w >>> 24] + HEX[(w >>> 16) & 255] + HEX[(w >>> 8) & 255] + HEX[w & 255];
  const x = word(b);
  const y = word(c);
  return `${word(a)}-${x.slice(0, 4)}-${x.slice(4)}-${y.slice(0, 4)}-${y.slice(4)}${word(d)}`;
}

/** Aborts a request started by `post`. */
export function abort(controller) {
  controller.abort();
}

/**
 * One console.warn naming the keys of `config` not in `known` (names separated by spaces), if
 * any: it catches a typo such as `flushInterval` without breaking the page.
 */
export function warnUnknownKeys(config, known) {
  const names = known.split(" ");
  const unknown = Object.keys(config).filter((key) => !names.includes(key));
  if (unknown.length) {
    console.warn(`spool: ignoring unknown config keys: ${unknown.join(", ")} (see ExporterConfig for the known ones)`);
  }
}

/** The `message` of something thrown, without ever throwing itself. */
export function message(e) {
  try {
    return typeof e?.message == "string" ? e.message : String(e);
  } catch {
    return "unknown error";
  }
}

/**
 * A plain copy of the user's `headers` config, checked now by the browser's own `Headers` so
 * a bad name or value fails at construction rather than on every request. A Content-Type is
 * left out: the body's own always goes. Throws an Error saying what is wrong.
 */
export function copyHeaders(headers) {
  const copy = {};
  const check = new Headers();
  for (const [name, value] of Object.entries(headers)) {
    if (typeof value != "string") throw new TypeError(`the value of ${name} must be a string`);
    try {
      check.append(name, value);
    } catch {
      // Not the browser's message: some name the value, which may be a secret.
      throw new TypeError(`${name} is not a valid header name, or its value is not a valid value`);
    }
    if (name.toLowerCase() != "content-type") copy[name] = value;
  }
  return copy;
}

/**
 * The Error spool throws or rejects with: a TypeError when `type` is true (an argument of the
 * wrong type, so `instanceof TypeError` holds), else an Error; named `name`, with the message
 * `spool: ${message}`, and a `field` property when one is given (a config error's key).
 */
export function error(type, name, message, field) {
  const e = type ? new TypeError(`spool: ${message}`) : new Error(`spool: ${message}`);
  e.name = name;
  if (field !== undefined) e.field = field;
  return e;
}

/** A new promise and its resolve function, as [promise, resolve]. */
export function deferred() {
  let resolve;
  const promise = new Promise((r) => (resolve = r));
  return [promise, resolve];
}

/** `{ delivered, dropped }`, plus `abandoned` when given (a shutdown report). */
export function report(delivered, dropped, abandoned) {
  return abandoned === undefined ? { delivered, dropped } : { delivered, dropped, abandoned };
}

/** The object `stats()` returns. */
export function stats(queued, inFlight, inFlightRequests, requests, delivered, retried,
                      queueFull, tooLarge, rejected, attemptsExhausted, shutdown, lastError) {
  return {
    queued, inFlight, inFlightRequests, requests, delivered, retried,
    dropped: {
      total: queueFull + tooLarge + rejected + attemptsExhausted + shutdown,
      queueFull, tooLarge, rejected, attemptsExhausted, shutdown,
    },
    lastError: lastError ?? null,
  };
}

/** `debug: true`: one line per request (never the body, which holds the API key). */
export function logRequest(id, events, bytes, attempt, keepalive) {
  console.debug("spool: POST", { id, events, bytes, attempt, keepalive });
}

/** `debug: true`: one line per outcome. */
export function logOutcome(id, status, retryAfter, error) {
  console.debug("spool: outcome", error === undefined ? { id, status, retryAfter } : { id, error });
}
