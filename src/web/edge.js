// spool's edge middleware, `spool/edge.js`: `withTelemetry(handler, options)` wraps a
// Cloudflare Worker's default export so that every request it serves becomes an event,
// delivered after the response inside `ctx.waitUntil`.
//
// ```js
// import wasm from "spool/spool_bg.wasm";
// import { initSync } from "spool";
// import { withTelemetry } from "spool/edge.js";
// initSync({ module: wasm });
// export default withTelemetry({ fetch: (request) => new Response("hello") });
// ```
//
// Batches across requests. workerd refuses I/O shared between requests ("Cannot perform I/O on
// behalf of a different request"), so no request may await another's fetch or timer; plain
// data, though, may pass between them. A request's facts therefore go, as plain data, into
// the isolate's waiting list. The first request to find no batch forming leads one: its
// `waitUntil` sleeps for the batching window (`flushIntervalMs` in `linger` mode, the default;
// no sleep in `auto` and `off`), then takes every event waiting, captures them into an
// Exporter of its own and shuts it down, which sends them in batches and retries, honouring
// `Retry-After`, until `deadlineMs` after the window. Every request,
// timer and answer of that delivery belongs to the leading request, and its `waitUntil`
// awaits them all. The requests that only added an event do no I/O for telemetry at all,
// which is what makes the middleware cheap: one collector request per window, not per
// Worker request.
//
// Exporters of one endpoint share its `Retry-After` hold (see `Exporter`), so a 429 answered
// to one batch holds back the next. Nothing runs when the module is loaded but the checks of
// the options: workerd forbids timers, I/O and random numbers at module scope.
//
// When and whether to send within a batch is the engine's decision; this file touches the
// request, env and ctx, and hands events over.

import { Exporter } from "./spool.js";

// The env bindings read when the options name no endpoint or key.
const ENDPOINT_BINDING = "SPOOL_ENDPOINT";
const API_KEY_BINDING = "SPOOL_API_KEY";
// Stands in for a key read from the env when the options are checked at module scope.
const API_KEY_STAND_IN = "phc_stand_in";

const DEFAULT_EVENT_NAME = "http_request";

// How long a batch's delivery may run after its window when `deadlineMs` is not given.
// Cloudflare keeps `waitUntil` work alive for about 30 s after the response; the window and the
// last 4 s are a margin for aborting what is abandoned and logging it.
const DEFAULT_DEADLINE_MS = 25_000;
// The shortest deadline: the shortest `requestTimeoutMs`.
const MIN_DEADLINE_MS = 100;
// The window and the deadline together: past `waitUntil`'s 30 s the runtime cancels the work,
// and events not yet delivered would be lost without being counted or logged.
const MAX_DEADLINE_MS = 30_000;

// How long after its window a leading request may still not have taken the waiting events
// before the next request leads instead (its `waitUntil` was cancelled, say). Taking is
// exclusive, so a late leader only finds fewer events.
const LEADER_GRACE_MS = 5_000;

// Stands in for the endpoint while the rest of the config is checked, when the endpoint comes
// from env (known only per request). Never sent to.
const ENDPOINT_STAND_IN = "https://endpoint-from-env.invalid/";

// The middleware's own option keys; the rest of the options is the exporter's config.
const OWN_KEYS = ["eventName", "captureQuery", "captureHeaders", "deadlineMs"];

// Longest `error` property, in characters: a thrown message can be arbitrarily long (some
// embed whole response bodies), and one event must stay far below a batch's maxBatchBytes.
const MAX_ERROR_LENGTH = 1000;

/**
 * Wraps `handler` (a Worker's default export). The result keeps the handler's other properties
 * (`scheduled`, `queue`, ...) and has a `fetch` that records one event per request, after the
 * handler answered or threw. See edge.d.ts for the options. Throws a `SpoolConfigError`
 * (naming the field) for an invalid option and a TypeError for a handler without `fetch`.
 */
export function withTelemetry(handler, options) {
  if (options === undefined || options === null) options = {};
  if (typeof options != "object") {
    throw configError("options", 'must be an object, e.g. { eventName: "http_request" }');
  }
  const eventName = optional(options, "eventName", "string", "a string") ?? DEFAULT_EVENT_NAME;
  if (eventName === "") throw configError("eventName", "must not be empty");
  const deadlineMs = optional(options, "deadlineMs", "number", "a number") ?? DEFAULT_DEADLINE_MS;
  if (!(deadlineMs >= MIN_DEADLINE_MS && deadlineMs <= MAX_DEADLINE_MS && Number.isInteger(deadlineMs))) {
    throw configError("deadlineMs", `must be from ${MIN_DEADLINE_MS} to ${MAX_DEADLINE_MS} (got ${deadlineMs})`);
  }
  const captureQuery = optional(options, "captureQuery", "boolean", "true or false") ?? false;
  let names;
  try {
    names = headerNames(options.captureHeaders);
  } catch (e) {
    throw configError("captureHeaders", describe(e));
  }
  const config = { ...options };
  for (const key of OWN_KEYS) delete config[key];
  const endpointFromEnv = config.endpoint === undefined || config.endpoint === null;
  const apiKeyFromEnv = config.apiKey === undefined || config.apiKey === null;
  config.flushOnPageHide = false;
  // A key read from the env per request is checked then; a stand-in lets the rest be checked now.
  const windowMs = Exporter.checkConfig({
    ...config,
    endpoint: endpointFromEnv ? ENDPOINT_STAND_IN : config.endpoint,
    apiKey: apiKeyFromEnv ? API_KEY_STAND_IN : config.apiKey,
  });
  if (windowMs + deadlineMs > MAX_DEADLINE_MS) {
    throw configError(
      "deadlineMs",
      `must leave the batching window (flushIntervalMs ${windowMs}) within waitUntil's ${MAX_DEADLINE_MS} ms: ` +
        `at most ${MAX_DEADLINE_MS - windowMs} (got ${deadlineMs})`,
    );
  }
  if (typeof handler?.fetch != "function") {
    throw new TypeError(
      "spool: withTelemetry(handler, options): handler must be a Worker's default export, " +
        "an object with a fetch(request, env, ctx) method",
    );
  }

  // The isolate's events not yet taken by a leading request: [properties, timestamp] pairs.
  let waiting = [];
  // The leading request that will take them, or undefined: { due } (ms since the epoch).
  let leader;
  // This isolate's events share one distinct id (unless the config names one): the first
  // exporter mints it, inside a request, since workerd forbids random numbers at module scope.
  let distinctId;
  let reported = false;

  /** The leading request's delivery: sleep for the window, take the waiting events, send them. */
  const lead = async (me, env) => {
    if (windowMs > 0) await new Promise((resolve) => setTimeout(resolve, windowMs));
    const events = waiting;
    waiting = [];
    if (leader === me) leader = undefined;
    let exporter;
    try {
      if (endpointFromEnv && env?.[ENDPOINT_BINDING] == null) {
        throw configError("endpoint", `is required: set the ${ENDPOINT_BINDING} env binding (or the endpoint option)`);
      }
      exporter = new Exporter({
        ...config,
        endpoint: endpointFromEnv ? env?.[ENDPOINT_BINDING] : config.endpoint,
        apiKey: apiKeyFromEnv ? env?.[API_KEY_BINDING] : config.apiKey,
        distinctId: config.distinctId ?? distinctId,
      });
    } catch (e) {
      // The env is the same for every request of an isolate: say it once.
      if (!reported) console.error(`${describe(e)} (events are not being sent)`);
      reported = true;
      return;
    }
    try {
      distinctId ??= exporter.distinctId;
      for (const [properties, timestamp] of events) {
        try {
          exporter.capture(eventName, properties, { timestamp });
        } catch (e) {
          // An event larger than maxBatchBytes: counted in stats, reported below.
          if (e?.name != "SpoolEventTooLarge") throw e;
        }
      }
      const report = await exporter.shutdown({ timeoutMs: deadlineMs });
      const stats = exporter.stats();
      if (stats.dropped.total) undelivered(eventName, stats);
      return report;
    } finally {
      exporter.free();
    }
  };

  const record = (request, env, ctx, status, started, error) => {
    waiting.push([facts(request, status, Date.now() - started, error, captureQuery, names), started]);
    const now = Date.now();
    if (leader && now <= leader.due) return;
    const me = { due: now + windowMs + LEADER_GRACE_MS };
    leader = me;
    const delivery = lead(me, env).catch((e) => {
      console.error(`spool: ${eventName} events were not sent: ${describe(e)}`);
    });
    ctx?.waitUntil(delivery);
  };
  const safely = (...args) => {
    try {
      record(...args);
    } catch (e) {
      console.error(`spool: the request's ${eventName} event was not recorded: ${describe(e)}`);
    }
  };

  return {
    ...handler,
    async fetch(request, env, ctx) {
      const started = Date.now();
      let response;
      try {
        response = await handler.fetch(request, env, ctx);
      } catch (error) {
        safely(request, env, ctx, 500, started, describe(error));
        throw error;
      }
      safely(request, env, ctx, response?.status ?? 500, started, undefined);
      return response;
    },
  };
}

/** `options[key]` if it is of type `type`; undefined when absent; a config error otherwise. */
function optional(options, key, type, want) {
  const value = options[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value != type) throw configError(key, `must be ${want} (got type ${typeof value})`);
  return value;
}

/** A `SpoolConfigError` as the Exporter throws them: `field` names the option. */
function configError(field, message) {
  const e = new Error(`spool: invalid config: ${field} ${message}`);
  e.name = "SpoolConfigError";
  e.field = field;
  return e;
}

/**
 * `captureHeaders`: `false` or absent for none, or an array of header names, returned
 * lowercased. Throws a TypeError saying what is wrong otherwise.
 */
function headerNames(value) {
  if (value === undefined || value === null || value === false) return [];
  if (!Array.isArray(value) || value.some((name) => typeof name != "string")) {
    throw new TypeError('must be false or an array of header names, e.g. ["user-agent"]');
  }
  // The runtime's own check of each name ("user agent" is refused).
  new Headers(value.map((name) => [name, ""]));
  return value.map((name) => name.toLowerCase());
}

/**
 * `text` cut to at most `max` UTF-16 code units, never between the two halves of a surrogate
 * pair: a lone half would be repaired to U+FFFD at capture, turning an emoji into garbage.
 */
function truncate(text, max) {
  if (text.length <= max) return text;
  const code = text.charCodeAt(max - 1);
  return text.slice(0, code >= 0xd800 && code <= 0xdbff ? max - 1 : max);
}

/**
 * The event's properties. Never the query string or a header unless asked for (they carry
 * tokens, cookies and personal data); never credentials written into the URL (`host` has
 * none).
 */
function facts(request, status, durationMs, error, captureQuery, names) {
  const url = new URL(request.url);
  const properties = { method: request.method, host: url.host, path: url.pathname, status, duration_ms: durationMs };
  if (captureQuery && url.search) properties.query = url.search.slice(1);
  const cf = request.cf;
  if (cf?.country) properties.country = cf.country;
  if (cf?.colo) properties.colo = cf.colo;
  if (error !== undefined) properties.error = truncate(error, MAX_ERROR_LENGTH);
  // fromEntries: a header named "__proto__" becomes a property like any other.
  const headers = names.map((name) => [name, request.headers.get(name)]).filter(([, value]) => value !== null);
  if (headers.length) properties.headers = Object.fromEntries(headers);
  return properties;
}

/** Events of a batch ended dropped: say so in the Worker's logs, the only place it shows. */
function undelivered(eventName, stats) {
  const { total, shutdown, attemptsExhausted, rejected, tooLarge, queueFull } = stats.dropped;
  const reasons = [
    [shutdown, "abandoned at deadlineMs"],
    [attemptsExhausted, "attemptsExhausted"],
    [rejected, "rejected"],
    [tooLarge, "tooLarge"],
    [queueFull, "queueFull"],
  ]
    .filter(([n]) => n)
    .map(([n, why]) => (n == total ? why : `${n} ${why}`));
  const last = stats.lastError ? `; last error: ${stats.lastError}` : "";
  const what = total == 1 ? `a ${eventName} event was` : `${total} ${eventName} events were`;
  console.warn(`spool: ${what} not delivered (${reasons.join(", ")}${last})`);
}

/** The message of something thrown, without ever throwing itself. */
function describe(e) {
  try {
    return typeof e?.message == "string" ? e.message : String(e);
  } catch {
    return "unknown error";
  }
}
