// spool's edge middleware, `spool/edge.js`: `withTelemetry(handler, options)` wraps a
// Cloudflare Worker's default export so that every request it serves becomes an event,
// delivered after the response inside `ctx.waitUntil`.
//
// ```js
// import wasm from "spool/spool_edge_bg.wasm";
// import { initSync, withTelemetry } from "spool/edge.js";
// initSync({ module: wasm });
// export default withTelemetry({ fetch: (request) => new Response("hello") });
// ```
//
// It runs on a wasm of its own, `spool_edge_bg.wasm` with its glue `spool_edge.js`: the page's
// `spool_bg.wasm` leaves the EdgeCoalescer out, so that no page downloads it. `initSync` (and
// `init`, and the `Exporter` for events of the Worker's own) are re-exported from that glue.
//
// Batches across requests. workerd refuses I/O shared between requests ("Cannot perform I/O on
// behalf of a different request"), so no request may await another's fetch or timer; plain
// data, though, may pass between them. Which request leads which batching window, when the
// window's batch goes, its retries, its deadline and the subrequests it may spend are the
// engine's decisions (its `Coalescer`), and the wasm class `EdgeCoalescer` carries them out:
// it sends through the exporter's own transport (gzip, Retry-After, the debug lines) from the
// `waitUntil` of the request leading each window. This file is the Workers glue: it reads the
// env and the request's facts, makes one call into the wasm per request (`record`), and hands
// the delivery it may return to `ctx.waitUntil`. The other requests do no I/O for telemetry at
// all, which is what makes the middleware cheap: one collector request per window, not per
// Worker request.
//
// Nothing runs when the module is loaded but the checks of the options (the wasm's, where the
// defaults and bounds are): workerd forbids timers, I/O and random numbers at module scope.

import { EdgeCoalescer } from "./spool_edge.js";

export { default, initSync, Exporter } from "./spool_edge.js";

// The env bindings read when the options name no endpoint or key.
const ENDPOINT_BINDING = "SPOOL_ENDPOINT";
const API_KEY_BINDING = "SPOOL_API_KEY";

// The middleware's own option keys; the rest of the options is the exporter's config.
const OWN_KEYS = ["eventName", "captureQuery", "captureHeaders", "deadlineMs", "subrequestLimit"];

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
  const [config, own] = split(options);
  EdgeCoalescer.check(config, own);
  const captureQuery = optional(own, "captureQuery", "boolean", "true or false") === true;
  let names;
  try {
    names = headerNames(own.captureHeaders);
  } catch (e) {
    throw configError("captureHeaders", describe(e));
  }
  const endpointFromEnv = config.endpoint === undefined || config.endpoint === null;
  const apiKeyFromEnv = config.apiKey === undefined || config.apiKey === null;
  if (typeof handler?.fetch != "function") {
    throw new TypeError(
      "spool: withTelemetry(handler, options): handler must be a Worker's default export, " +
        "an object with a fetch(request, env, ctx) method",
    );
  }

  // The isolate's coalescer, made at its first request (it draws random numbers, which workerd
  // forbids at module scope) with that request's env; undefined until then.
  let coalescer;
  let reported = false;

  /** The isolate's coalescer, or undefined (said once) when the config from env is invalid. */
  const coalescerFor = (env) => {
    if (coalescer || reported) return coalescer;
    try {
      if (endpointFromEnv && env?.[ENDPOINT_BINDING] == null) {
        throw configError("endpoint", `is required: set the ${ENDPOINT_BINDING} env binding (or the endpoint option)`);
      }
      const exporter = {
        ...config,
        endpoint: endpointFromEnv ? env?.[ENDPOINT_BINDING] : config.endpoint,
        apiKey: apiKeyFromEnv ? env?.[API_KEY_BINDING] : config.apiKey,
      };
      coalescer = new EdgeCoalescer(exporter, own);
    } catch (e) {
      // The env is the same for every request of an isolate: say it once.
      console.error(`${describe(e)} (events are not being sent)`);
      reported = true;
    }
    return coalescer;
  };

  /** Hands the request's event to the coalescer; a request that leads a window delivers it. */
  const record = (c, request, ctx, status, started, error) => {
    try {
      const now = Date.now();
      const properties = JSON.stringify(facts(request, status, now - started, error, captureQuery, names));
      const delivery = c.record(properties, started, now);
      if (delivery) ctx?.waitUntil(delivery);
    } catch (e) {
      console.error(`spool: the request's event was not recorded: ${describe(e)}`);
    }
  };

  return {
    ...handler,
    async fetch(request, env, ctx) {
      const started = Date.now();
      const c = coalescerFor(env);
      let response;
      try {
        response = await handler.fetch(request, env, ctx);
      } catch (error) {
        if (c) record(c, request, ctx, 500, started, describe(error));
        throw error;
      }
      if (c) record(c, request, ctx, response?.status ?? 500, started, undefined);
      return response;
    },
  };
}

/**
 * `options` as the exporter's config and the middleware's own keys. Options that are not an
 * object are passed on as the config, which the wasm refuses naming `options`.
 */
function split(options) {
  if (options === undefined || options === null) return [{}, {}];
  if (typeof options != "object") return [options, {}];
  const config = { ...options };
  const own = {};
  for (const key of OWN_KEYS) {
    own[key] = config[key];
    delete config[key];
  }
  return [config, own];
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

/** The message of something thrown, without ever throwing itself. */
function describe(e) {
  try {
    return typeof e?.message == "string" ? e.message : String(e);
  } catch {
    return "unknown error";
  }
}
