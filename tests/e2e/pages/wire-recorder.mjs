// Records, in the page, every request the exporter makes: spool's `debug` log names each
// request (id, attempt, events, bytes, keepalive, outlives) just before it calls `fetch`, and each outcome
// the engine took. Wrapping `console.debug` and `fetch` ties the two together, tags each request's
// URL with its id (`?transmit=ID`, a query string: still CORS-simple, so the wire is unchanged
// otherwise) so the collector's log can be joined to it, and counts requests open at once:
// ordinary ones (against maxInFlight; one that outlives the page has `keepalive: true` too),
// keepalive ones of the page-close path, and the bytes of every request with `keepalive: true`
// (against the browser's 64 KiB quota).
//
// Every record carries `seq`, one counter for the whole page, so "the page had seen answer A
// when it sent request B" is an exact fact, not a comparison of milliseconds.

/**
 * Installs the wrappers; returns the recorder. Call before creating the exporter (with
 * `debug: true`). `recorder.result()` is a plain, JSON-able summary.
 */
export function recordWire() {
  let seq = 0;
  /** The request the debug log just announced; its `fetch` comes next, synchronously. */
  let announced = null;
  const transmits = new Map();
  const open = { ordinary: 0, keepalive: 0, keepaliveBytes: 0 };
  const max = { ordinary: 0, keepalive: 0, keepaliveBytes: 0 };
  const unexpected = [];

  const originalDebug = console.debug;
  console.debug = function (label, detail, ...rest) {
    if (label === "spool: POST") {
      announced = detail;
      return;
    }
    if (label === "spool: outcome") {
      const t = transmits.get(detail.id);
      if (!t) unexpected.push(`outcome for unknown request ${detail.id}`);
      else if (t.outcome) unexpected.push(`second outcome for request ${detail.id}`);
      else t.outcome = { ...detail, seq: ++seq, at: Date.now() };
      return;
    }
    return originalDebug.call(this, label, detail, ...rest);
  };

  const originalFetch = globalThis.fetch;
  globalThis.fetch = function (url, init = {}) {
    const d = announced;
    announced = null;
    if (!d) {
      unexpected.push(`fetch of ${url} without a debug line before it`);
      return originalFetch.call(this, url, init);
    }
    const t = {
      id: d.id,
      attempt: d.attempt,
      events: d.events,
      bytes: d.bytes,
      keepalive: Boolean(init.keepalive),
      sent: { seq: ++seq, at: Date.now() },
      end: null,
      outcome: null,
    };
    if (t.keepalive !== d.keepalive) unexpected.push(`request ${d.id}: keepalive flag differs from the log`);
    transmits.set(t.id, t);
    const kind = t.keepalive && !d.outlives ? "keepalive" : "ordinary";
    open[kind]++;
    if (t.keepalive) open.keepaliveBytes += t.bytes;
    for (const k of Object.keys(max)) max[k] = Math.max(max[k], open[k]);
    const close = (how) => {
      if (t.end) return;
      t.end = { how, seq: ++seq, at: Date.now() };
      open[kind]--;
      if (t.keepalive) open.keepaliveBytes -= t.bytes;
    };
    // Fires synchronously inside `controller.abort()`: the request is gone from that moment.
    init.signal?.addEventListener("abort", () => close("aborted"), { once: true });
    const tagged = `${url}${String(url).includes("?") ? "&" : "?"}transmit=${t.id}`;
    const sent = originalFetch.call(this, tagged, init);
    // Registered before the exporter's own handlers, so it runs first.
    sent.then(
      (r) => close(`status ${r.status}`),
      () => close("failed"),
    );
    return sent;
  };

  return {
    /** Requests open now, by kind. */
    open: () => ({ ...open }),
    /** Undoes the wrappers. */
    uninstall() {
      console.debug = originalDebug;
      globalThis.fetch = originalFetch;
    },
    result: () => ({ transmits: [...transmits.values()], max: { ...max }, unexpected: [...unexpected] }),
  };
}
