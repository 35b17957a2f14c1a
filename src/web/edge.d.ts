// Types of `spool/edge.js`, the edge middleware.
import type { ExporterConfig } from "./spool_edge.js";

/** The edge's wasm (`spool_edge_bg.wasm`), as in "spool": `initSync({ module })` once per
 *  isolate, at module scope, with the `.wasm` imported as a compiled module. */
export { default, initSync, Exporter } from "./spool_edge.js";

/** Options of `withTelemetry`. Every field is optional; any `ExporterConfig` key may be given.
 *  `batchMode` and `flushIntervalMs` set the batching window: in `linger` mode (the default)
 *  the events of the requests an isolate serves within `flushIntervalMs` (default 1000) go to
 *  the collector together; in `auto` and `off` each request's event goes at once. */
export interface EdgeOptions extends Partial<ExporterConfig> {
  /** The collector's batch URL. Default: the `SPOOL_ENDPOINT` env binding, read per request. */
  endpoint?: string;
  /** The project key. Default: the `SPOOL_API_KEY` env binding (or ""). Never logged. */
  apiKey?: string;
  /** The event's name. Default "http_request". */
  eventName?: string;
  /** Record the query string (as the `query` property). Default false: query strings carry tokens and personal data. */
  captureQuery?: boolean;
  /** Request headers to record (as the `headers` property), e.g. ["user-agent"]. Default false: none (headers carry cookies and credentials). */
  captureHeaders?: false | string[];
  /** How long a batch's delivery may run after its batching window before what is left is abandoned (counted and logged). Default 25,000, 100 to 30,000; with the window, at most 30,000 (Cloudflare's limit for `waitUntil` work). */
  deadlineMs?: number;
  /** Requests (batches and retries) one window's delivery may make: they are subrequests of the request leading the window, which Cloudflare limits (50 per request on the free plan, 1,000 on paid plans; the handler's own subrequests in that request count too). Events a window cannot send within it go to the next window. Default 50, 1 to 1,000. */
  subrequestLimit?: number;
}

/** What `ctx` must offer: Cloudflare's `ExecutionContext`. */
export interface WaitUntilContext {
  waitUntil(promise: Promise<unknown>): void;
}

/** A Worker's default export, as far as `withTelemetry` needs it. */
export interface FetchHandler<Env = any> {
  fetch(request: Request, env: Env, ctx: WaitUntilContext): Response | Promise<Response>;
}

/**
 * Wraps a Worker's default export so that every request is recorded as an event (method, host,
 * path, status, duration_ms, country, colo; status 500 and error when the handler throws) and
 * delivered after the response inside `ctx.waitUntil`, batched with the other requests of the
 * isolate, gzipped as a page's requests are (`compression`, default "gzip"). Returns the object
 * to export. Throws a `SpoolConfigError` (with `field`) for an
 * invalid option. Call `initSync` (or `init`), exported here, first.
 *
 * ```js
 * export default withTelemetry({ fetch: (request, env, ctx) => new Response("hello") });
 * ```
 */
export function withTelemetry<H extends FetchHandler>(handler: H, options?: EdgeOptions): H;
