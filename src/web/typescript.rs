//! The TypeScript types of the JavaScript API, emitted into `pkg/spool.d.ts` so the config,
//! the capture options, the reports and the stats are real types rather than `any`.

use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** Settings for `new Exporter(config)`. Every field but `endpoint` is optional. */
export interface ExporterConfig {
  /** Where batches are POSTed: PostHog's batch API, e.g. "https://us.i.posthog.com/batch/", or with format "otlp" an OpenTelemetry Collector's "https://collector.example:4318/v1/logs". */
  endpoint: string;
  /** Accept an http:// endpoint on a host other than localhost, 127.0.0.1 or [::1] (events and the API key then cross the network in clear text). Default false. */
  allowInsecure?: boolean;
  /** "posthog" (PostHog's batch API) or "otlp" (OTLP/HTTP JSON logs). Default "posthog". */
  format?: "posthog" | "otlp";
  /** The PostHog project key (phc_...) written into every batch body; required with the PostHog format (1 to 64 ASCII characters, not a personal phx_ key). Never logged. */
  apiKey?: string;
  /** The OTLP resource's service.name. Default "unknown_service". */
  serviceName?: string;
  /** Who events belong to unless a capture says otherwise. Default: a uuid per exporter. */
  distinctId?: string;
  /** "linger" (wait up to flushIntervalMs or a full batch), "auto" (send at once when idle, accumulate while a request is in flight) or "off" (one event per request). Default "linger". */
  batchMode?: "linger" | "auto" | "off";
  /** Longest an event waits before its batch is sent ("linger" mode). Default 1000, 0 to 3,600,000. */
  flushIntervalMs?: number;
  /** Events per request. Default 500, 1 to 10,000. */
  maxBatchEvents?: number;
  /** Body bytes per request. Default 1,000,000, 512 to 16 MiB. In a browser that packs batches ahead (gzip), a batch of several events is also cut to what fills one 16 KiB keepalive body once gzipped (learned from the packs), so the page-close path sends a few full bodies. */
  maxBatchBytes?: number;
  /** Events held at once; more are dropped (counted as queueFull). Default 10,000, 1 to 10,000,000. */
  maxQueueEvents?: number;
  /** Bytes of events held at once. Default 5 MiB, 1 KiB to 1 GiB. */
  maxQueueBytes?: number;
  /** Sends of one batch before it is dropped. Default 10, 1 to 100. */
  maxAttempts?: number;
  /** Ceiling of the first retry's random delay. Default 1000, 1 to 3,600,000. */
  initialBackoffMs?: number;
  /** Ceiling of any retry's random delay. Default 30,000, initialBackoffMs to 3,600,000. */
  maxBackoffMs?: number;
  /** Ordinary requests in flight at once. Default 4, 1 to 64. */
  maxInFlight?: number;
  /** A request unanswered by then is aborted and retried. Default 10,000, 100 to 600,000. */
  requestTimeoutMs?: number;
  /** The most characters one exporter keeps in localStorage for the next page load (persist): the events raw-deflated (batches packed ahead by the host, the rest in the wasm as the copy is written), a character per byte, about 50 per 300-byte event; the oldest beyond it are left out, counted as dropped persistCap. Default 1 MiB, 1 KiB to 4 MiB. */
  persistMaxBytes?: number;
  /** "gzip" (bodies gzipped by the host's CompressionStream, ahead of time for a batch that waits; at page hide what has no pack yet is gzipped in the wasm) or "none". Default "gzip". */
  compression?: "gzip" | "none";
  /** Keep what is held armed with fetchLater where the page has it, send the rest with keepalive and sendBeacon when a navigation starts, the page is hidden or it goes away, and follow online/offline. Default true. */
  flushOnPageHide?: boolean;
  /** Keep what is held when the page goes away in localStorage, for the next exporter of the same endpoint to send first (deflated, at most persistMaxBytes, 7 days; never the API key). Pages only: a Web Worker persists nothing. Default true. */
  persist?: boolean;
  /** Extra headers for ordinary requests (not keepalive ones: they would force a CORS preflight, which cannot finish while a page unloads). Never logged. */
  headers?: Record<string, string>;
  /** Log each request and outcome with console.debug (never the body or the key). Default false. */
  debug?: boolean;
}

/** The properties of an event: anything JSON.stringify turns into a JSON object. */
export type Properties = Record<string, unknown>;

/** The third argument of `capture`. */
export interface CaptureOptions {
  /** Who did it; default the exporter's distinctId. */
  distinctId?: string;
  /** When it happened: ms since 1970 or a Date. Default: now. */
  timestamp?: number | Date;
  /** The event's uuid (8-4-4-4-12 hex); default a fresh UUIDv7. Retries keep it. */
  uuid?: string;
}

/** What `flush()` resolves to: how the events captured before the call ended. */
export interface FlushReport {
  delivered: number;
  dropped: number;
}

/** The argument of `shutdown`. */
export interface ShutdownOptions {
  /** How long to keep sending before abandoning what is left. Default 2000. */
  timeoutMs?: number;
}

/** What `shutdown()` resolves to: how the events held at the call ended. */
export interface ShutdownReport {
  delivered: number;
  /** Every event dropped after the call, the abandoned ones included. */
  dropped: number;
  /** Events still held at the deadline, dropped unsent (also counted in stats.dropped.shutdown). */
  abandoned: number;
}

/** Events dropped, by reason. */
export interface DroppedStats {
  total: number;
  /** The queue was full at capture. */
  queueFull: number;
  /** Larger than maxBatchBytes on its own. */
  tooLarge: number;
  /** The collector refused them with a 4xx that retrying cannot fix. */
  rejected: number;
  /** Every one of maxAttempts sends failed. */
  attemptsExhausted: number;
  /** Abandoned at shutdown's deadline. */
  shutdown: number;
  /** Stored for the next page load but left out by the storage caps (the oldest beyond 1 MiB, or older than 7 days when read back). */
  persistCap: number;
}

/** A snapshot of `stats()`. */
export interface ExporterStats {
  /** Events held and not in flight (lingering or waiting to retry). */
  queued: number;
  /** Events in requests not yet answered. */
  inFlight: number;
  /** Requests not yet answered. */
  inFlightRequests: number;
  /** Requests sent, first attempts and retries. */
  requests: number;
  /** Events the collector acknowledged. */
  delivered: number;
  /** Requests that were retries. */
  retried: number;
  /** Events this exporter took in from what an earlier page load stored (sent first). */
  restored: number;
  /** localStorage calls that failed (disabled, quota full) and stored text that could not be read; the first is logged. */
  storageErrors: number;
  dropped: DroppedStats;
  /** The most recent failure, e.g. "HTTP 503", "timeout", "network error: ..."; null if none. */
  lastError: string | null;
}

// wasm-bindgen declares `Exporter[Symbol.dispose]()` (for `using`), and `Symbol.dispose` is
// declared only by TypeScript's esnext libs: this declares it for a project on es2022, the way
// @types/node does, and merges with the libs' own where they have it.
declare global {
  interface SymbolConstructor {
    readonly dispose: unique symbol;
  }
}
"#;
