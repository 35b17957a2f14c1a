// The JavaScript half of the edge middleware (`withTelemetry`, checked and built in edge.rs):
// the `fetch` a Worker exports. Per request it times the wrapped handler, records the request's
// facts as an event in an exporter of its own, shuts that exporter down at once (which sends
// the event, retrying until the deadline) and hands the shutdown to `ctx.waitUntil`. When and
// whether to send is the engine's decision; this file only touches the request, env and ctx.

// The env bindings read when the options name no endpoint or key.
const ENDPOINT_BINDING = "SPOOL_ENDPOINT";
const API_KEY_BINDING = "SPOOL_API_KEY";

// The middleware's own option keys; the rest of the options is the exporter's config.
const OWN_KEYS = ["eventName", "captureQuery", "captureHeaders", "deadlineMs"];

// Longest `error` property, in characters: a thrown message can be arbitrarily long (some
// embed whole response bodies), and one event must stay far below a batch's maxBatchBytes.
const MAX_ERROR_LENGTH = 1000;

/**
 * The exporter's part of `options`: a copy without the middleware's own keys, with `standIn`
 * as the endpoint when the options name none (it comes from env, per request), so the rest
 * can be checked now.
 */
export function exporterConfig(options, standIn) {
  const config = { ...options };
  for (const key of OWN_KEYS) delete config[key];
  config.endpoint ??= standIn;
  return config;
}

/**
 * `captureHeaders`: `false` or absent for none, or an array of header names, returned
 * lowercased. Throws a TypeError saying what is wrong otherwise.
 */
export function headerNames(value) {
  if (value === undefined || value === false) return [];
  if (!Array.isArray(value) || value.some((name) => typeof name != "string")) {
    throw new TypeError('must be false or an array of header names, e.g. ["user-agent"]');
  }
  // The runtime's own check of each name ("user agent" is refused).
  new Headers(value.map((name) => [name, ""]));
  return value.map((name) => name.toLowerCase());
}

/**
 * Wraps `handler` (a Worker's default export). The result keeps the handler's other properties
 * (`scheduled`, `queue`, ...) and has a `fetch` that records one event per request, after the
 * handler answered or threw. `create([endpoint, apiKey, distinctId])` makes a request's exporter
 * (throwing if the endpoint from env is missing or invalid). A throwing handler's error is
 * rethrown unchanged; telemetry that fails is logged and never reaches the client.
 */
export function wrap(handler, create, eventName, captureQuery, names, deadlineMs) {
  if (typeof handler?.fetch != "function") {
    throw new TypeError(
      "spool: withTelemetry(handler, options): handler must be a Worker's default export, " +
        "an object with a fetch(request, env, ctx) method",
    );
  }
  // This isolate's events share one distinct id (unless the config names one): the first
  // exporter mints it, inside a request, since workerd forbids random numbers at module scope.
  let distinctId;
  let reported = false;

  const record = (request, env, ctx, status, started, error) => {
    let exporter;
    try {
      exporter = create([env?.[ENDPOINT_BINDING], env?.[API_KEY_BINDING], distinctId]);
    } catch (e) {
      // The env is the same for every request of an isolate: say it once.
      if (!reported) console.error(`${describe(e)} (events are not being sent)`);
      reported = true;
      return;
    }
    try {
      distinctId ??= exporter.distinctId;
      const properties = facts(request, status, Date.now() - started, error, captureQuery, names);
      exporter.capture(eventName, properties, { timestamp: started });
    } catch (e) {
      exporter.free();
      throw e;
    }
    const delivery = exporter.shutdown({ timeoutMs: deadlineMs }).then((report) => {
      if (report.dropped) undelivered(eventName, exporter.stats());
      exporter.free();
      return report;
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
  if (error !== undefined) properties.error = error.slice(0, MAX_ERROR_LENGTH);
  // fromEntries: a header named "__proto__" becomes a property like any other.
  const headers = names.map((name) => [name, request.headers.get(name)]).filter(([, value]) => value !== null);
  if (headers.length) properties.headers = Object.fromEntries(headers);
  return properties;
}

/** A request's event ended dropped: say so in the Worker's logs, the only place it shows. */
function undelivered(eventName, stats) {
  const { shutdown, attemptsExhausted } = stats.dropped;
  const why = shutdown ? "abandoned at deadlineMs" : attemptsExhausted ? "attemptsExhausted" : "rejected";
  const last = stats.lastError ? `; last error: ${stats.lastError}` : "";
  console.warn(`spool: a ${eventName} event was not delivered (${why}${last})`);
}

/** The message of something thrown, without ever throwing itself. */
function describe(e) {
  try {
    return typeof e?.message == "string" ? e.message : String(e);
  } catch {
    return "unknown error";
  }
}
