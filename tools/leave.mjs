//! What reached the collector while a page went away, and what its next load sent: each
//! request's path, and per sender the events of one run by how they came. A plain ES module
//! with no imports over tools/collector.mjs's log entries, so that both tools/demo.mjs and the
//! demo's next page (www/next.js, which loads it from the collector) read the log the same way.

/** How a request reached the collector (see `deliveryPath`), in the order the page shows them. */
export const PATHS = ['ordinary', 'keepalive', 'beacon', 'deferred'];

/** Who sent a body (see `senderOf`). */
export const SENDERS = ['spool', 'posthog-js'];

/** The events of a decoded body: PostHog's `{batch}`, posthog-js's array, or one event. */
export function eventsOf(body) {
  if (Array.isArray(body?.batch)) return body.batch;
  if (Array.isArray(body)) return body;
  return body && typeof body === 'object' && 'event' in body ? [body] : [];
}

/**
 * Who sent a body: posthog-js writes its key into every event's properties (`token`), spool
 * only into the envelope (both send PostHog's `{api_key, batch, sent_at}`).
 */
export function senderOf(body) {
  return eventsOf(body).some((e) => e?.properties?.token !== undefined) ? 'posthog-js' : 'spool';
}

/**
 * How a request reached the collector, as bench/close.mjs's sink tells them apart, with the
 * fetches split by when they came:
 * - `deferred`: a spool body with no send time, neither `sent_at` nor the URL's `_` (a
 *   `fetchLater` request: spool cannot know when the browser sends it, so it stamps none);
 * - `beacon`: `Sec-Fetch-Mode: no-cors` (what `sendBeacon` with a text/plain body sends; a
 *   fetch, keepalive or not, says `cors` or `same-origin`);
 * - `keepalive`: a fetch that arrived once the page had started leaving (`leftAt`, ms since the
 *   epoch): only a keepalive request outlives its page;
 * - `ordinary`: a fetch that arrived while the page still ran.
 */
export function deliveryPath(entry, leftAt) {
  const body = entry.body;
  const stamped = body && typeof body === 'object' && ('sent_at' in body || /[?&]_=/.test(entry.url ?? ''));
  if (senderOf(body) === 'spool' && !stamped) return 'deferred';
  if (entry.fetchMode === 'no-cors') return 'beacon';
  return entry.receivedAt >= leftAt ? 'keepalive' : 'ordinary';
}

/** The events of run `run` a log entry carries (their properties name the run). */
export function runEvents(entry, run) {
  return eventsOf(entry.body).filter((e) => e?.properties?.run === run);
}

/**
 * The tally of run `run` from log entries, per sender: `atClose` (first arrivals in requests up
 * to seq `closedAt`, by path; every request counts as at close while `closedAt` is null),
 * `nextLoad` (first arrivals after it), `repeats` (arrivals of a uuid the collector already
 * had), `distinct`, `requests`, and `wireBytes` and `jsonBytes` of the requests that carried
 * the run's events.
 */
export function tallyRun(batches, { run, leftAt, closedAt = null }) {
  const tally = Object.fromEntries(SENDERS.map((s) => [s, emptyTally()]));
  const seen = new Map(SENDERS.map((s) => [s, new Set()]));
  for (const entry of [...batches].sort((a, b) => a.seq - b.seq)) {
    const events = runEvents(entry, run);
    if (events.length === 0) continue;
    const sender = senderOf(entry.body);
    const t = tally[sender];
    const uuids = seen.get(sender);
    const atClose = closedAt === null || entry.seq <= closedAt;
    const path = deliveryPath(entry, leftAt);
    t.requests++;
    t.wireBytes += entry.bytes;
    t.jsonBytes += entry.jsonBytes ?? entry.bytes;
    for (const e of events) {
      if (uuids.has(e.uuid)) {
        t.repeats++;
        continue;
      }
      uuids.add(e.uuid);
      if (atClose) t.atClose[path]++;
      else t.nextLoad++;
    }
  }
  for (const s of SENDERS) tally[s].distinct = seen.get(s).size;
  return tally;
}

function emptyTally() {
  return {
    atClose: Object.fromEntries(PATHS.map((p) => [p, 0])),
    nextLoad: 0,
    repeats: 0,
    distinct: 0,
    requests: 0,
    wireBytes: 0,
    jsonBytes: 0,
  };
}
