// The browser half of the benchmark: one contender per page, driven by bench/run.mjs through
// `window.bench`. Every contender captures the same event, `bench_event` with
// `{ i, path: "/checkout", plan: "pro", amount: 42.5 }`, through the same loop, so the
// contenders differ only in what their `capture` does.
//
// Contenders:
//   floor    what any exporter must at least do per event in plain JavaScript: a timestamp
//            (`new Date().toISOString()`), a uuid, `JSON.stringify`, a `push` onto an array.
//   spool    pkg/spool.js (the release build), in the batch mode the spec names.
//   posthog  posthog-js from node_modules (dist/module.js, what `import posthog from
//            "posthog-js"` gives a bundler), with everything but event capture turned off.

const EVENT = "bench_event";
// The distinct id every contender is given, so events are the same size everywhere.
export const DISTINCT_ID = "0190a3c1-7a2b-7c3d-8e4f-5a6b7c8d9e0f";

/** The properties of event `i`: a fresh object per capture, as an application would build. */
function properties(i) {
  return { i, path: "/checkout", plan: "pro", amount: 42.5 };
}

let contender = null;
let wasmMemory = null;

// Tasks of 50 ms or more (the browser's own definition of a long task), from page load on.
const longTasks = [];
try {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) longTasks.push(e.duration);
  }).observe({ type: "longtask", buffered: true });
} catch {}

export const bench = {
  /**
   * Loads and configures one contender. `spec`: { kind, apiKey, endpoint, options }.
   * `options` are spool's config keys or posthog-js's init keys, merged over the defaults here.
   * With `timeLifecycle`, the contender's page-lifecycle listeners are timed (see
   * `lifecycleTimes`).
   */
  async setup(spec) {
    if (spec.timeLifecycle) timeLifecycleHandlers();
    contender = await CONTENDERS[spec.kind](spec);
    return { kind: spec.kind };
  },

  /**
   * Captures events `start` .. `start + n - 1`, `chunk` per task (the loop yields to the event
   * loop between chunks, so the contender's timers and responses run as they would in a page).
   * Returns the time spent inside the chunks (`totalMs`) and the longest chunk. With
   * `mark`, each chunk starts with `performance.mark("bench-chunk")` so a trace can tell the
   * benchmark's own tasks from the contender's.
   */
  async captureLoop({ n, chunk = 100, start = 0, mark = false }) {
    let totalMs = 0;
    let maxChunkMs = 0;
    const end = start + n;
    for (let i = start; i < end; i += chunk) {
      await nextTask();
      if (mark) performance.mark("bench-chunk");
      const last = Math.min(i + chunk, end);
      const t0 = performance.now();
      for (let j = i; j < last; j++) contender.capture(EVENT, properties(j));
      const dt = performance.now() - t0;
      totalMs += dt;
      if (dt > maxChunkMs) maxChunkMs = dt;
    }
    return { totalMs, maxChunkMs, events: n };
  },

  /**
   * Captures `perSecond` events a second for `seconds`, on a schedule anchored at the start
   * (no drift): one event at a time up to 100/s, then a group every 10 ms. Event numbers start
   * at `start`. Resolves once the last event is captured.
   */
  async rate({ perSecond, seconds, start = 0 }) {
    const tickMs = Math.max(10, 1000 / perSecond);
    const perTick = Math.max(1, Math.round((perSecond * tickMs) / 1000));
    const total = Math.round(perSecond * seconds);
    const t0 = performance.now();
    let i = 0;
    for (let tick = 0; i < total; tick++) {
      const due = t0 + tick * tickMs;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      for (let k = 0; k < perTick && i < total; k++, i++) contender.capture(EVENT, properties(start + i));
    }
    return { events: total, elapsedMs: performance.now() - t0 };
  },

  /** Sends everything held and waits for it (spool); a no-op for the others. */
  async flush() {
    return contender.flush ? await contender.flush() : null;
  },

  /** spool's wasm linear memory in bytes (null for the others), and the JS heap in use. */
  memory() {
    return {
      wasmBytes: wasmMemory ? wasmMemory.buffer.byteLength : null,
      jsHeapBytes: performance.memory?.usedJSHeapSize ?? null,
    };
  },

  /** Durations (ms) of the long tasks seen since `since` (an index into the list). */
  longTasks(since = 0) {
    return longTasks.slice(since);
  },

  stats() {
    return contender.stats ? contender.stats() : null;
  },

  /**
   * What the previous page of this origin (in this browser context) spent in its contender's
   * page-lifecycle listeners, one entry per event dispatched: `{ type, ms, listeners, at, done }`
   * (`at`: the wall-clock time its first listener began; `done` false: the page went in the
   * middle of a listener, whose time is not in `ms`). Read once: the record is removed.
   */
  lifecycleTimes() {
    const text = localStorage.getItem(LIFECYCLE_KEY);
    localStorage.removeItem(LIFECYCLE_KEY);
    return text ? JSON.parse(text) : [];
  },

  /**
   * How long the previous page of this origin was held between `beforeunload` and `pagehide`
   * (ms, by the wall clock, each taken as the event's dispatch began, before any contender's
   * listener), or null if it saw no `beforeunload` (a closed tab in WebKit). A navigation
   * commits, and `pagehide` fires, once the next document's answer is in: a contender's
   * requests that take the connections the navigation needs hold it. Read once.
   */
  leaveHeldMs() {
    const text = localStorage.getItem(LEAVE_KEY);
    localStorage.removeItem(LEAVE_KEY);
    const t = text ? JSON.parse(text) : {};
    return t.beforeunload && t.pagehide ? t.pagehide - t.beforeunload : null;
  },

  /** The floor's records (its JSON strings), for the size baseline. */
  floorRecords(n) {
    return contender.records ? contender.records.slice(0, n) : null;
  },
};

const CONTENDERS = {
  async floor() {
    const records = [];
    return {
      records,
      capture(event, props) {
        records.push(
          JSON.stringify({
            event,
            distinct_id: DISTINCT_ID,
            properties: props,
            timestamp: new Date().toISOString(),
            uuid: crypto.randomUUID(),
          }),
        );
      },
    };
  },

  async spool({ apiKey, endpoint, options = {} }) {
    const { default: init, Exporter } = await import("/pkg/spool.js");
    // init() resolves to the wasm instance's exports, `memory` among them.
    const exports = await init();
    wasmMemory = exports.memory;
    const exporter = new Exporter({
      endpoint,
      apiKey,
      distinctId: DISTINCT_ID,
      ...options,
    });
    return {
      capture: (event, props) => exporter.capture(event, props),
      flush: () => exporter.flush(),
      stats: () => exporter.stats(),
    };
  },

  async posthog({ apiKey, endpoint, options = {} }) {
    const { default: posthog } = await import("/node_modules/posthog-js/dist/module.js");
    const apiHost = new URL(endpoint).origin;
    const loaded = new Promise((resolve) => {
      posthog.init(apiKey, {
        api_host: apiHost,
        // Headless Chromium's user agent is on posthog-js's bot list: it would drop everything.
        opt_out_useragent_filter: true,
        // No remote config (/flags) request, no cookies or storage, no gzip (the collector
        // and spool both see plain JSON), and nothing captured but what the loop captures.
        advanced_disable_flags: true,
        advanced_disable_decide: true,
        persistence: "memory",
        disable_compression: true,
        autocapture: false,
        capture_pageview: false,
        capture_pageleave: false,
        capture_performance: false,
        capture_heatmaps: false,
        capture_dead_clicks: false,
        capture_exceptions: false,
        disable_session_recording: true,
        disable_surveys: true,
        disable_product_tours: true,
        disable_web_experiments: true,
        disable_external_dependency_loading: true,
        // Its default drops events beyond 10/s (bursts of 100).
        rate_limiting: { events_per_second: 1e9, events_burst_limit: 1e9 },
        bootstrap: { distinctID: DISTINCT_ID },
        ...options,
        loaded: () => resolve(),
      });
    });
    await loaded;
    return {
      capture: (event, props) => posthog.capture(event, props),
    };
  },
};

// The events a page's exporter does its leaving work in. Figure 7 times the contender's
// listeners for them by wrapping `EventTarget.prototype.addEventListener` before the contender
// loads: both spool (through wasm-bindgen's glue) and posthog-js look the method up on the
// target when they add a listener. A PerformanceObserver for `longtask` would not do: it
// reports only tasks of 50 ms or more, in Chromium only, and its entries die with the page.
const LIFECYCLE = new Set(["beforeunload", "pagehide", "visibilitychange", "unload", "freeze"]);
// Where the timings go, written after every listener: the page is gone before anyone can ask.
const LIFECYCLE_KEY = "bench:lifecycle";

// When `beforeunload` and `pagehide` began, for `leaveHeldMs`.
const LEAVE_KEY = "bench:leave";

function timeLifecycleHandlers() {
  const proto = EventTarget.prototype;
  if (proto.addEventListener.benchTimed) return;
  const add = proto.addEventListener;
  // The bench's own, added first, so they run before the contender's.
  const leave = {};
  for (const type of ["beforeunload", "pagehide"]) {
    add.call(window, type, () => {
      leave[type] = Date.now();
      try {
        localStorage.setItem(LEAVE_KEY, JSON.stringify(leave));
      } catch {}
    });
  }
  const remove = proto.removeEventListener;
  // listener -> event type -> its timed wrapper, so removeEventListener finds what was added.
  const wrappers = new WeakMap();
  const dispatches = [];
  let last = null;
  const save = () => {
    try {
      localStorage.setItem(LIFECYCLE_KEY, JSON.stringify(dispatches.map(({ event, ...d }) => d)));
    } catch {}
  };
  const timed = (type, listener) => {
    let byType = wrappers.get(listener);
    if (!byType) wrappers.set(listener, (byType = new Map()));
    if (!byType.has(type)) {
      byType.set(type, function (event) {
        if (last?.event !== event) {
          last = { event, type, ms: 0, listeners: 0, at: Date.now(), done: false };
          dispatches.push(last);
        }
        // Stored before the listener runs too: a browser may end the page's process in the
        // middle of one (Chromium, after a cross-site navigation), and `done: false` says so.
        last.done = false;
        save();
        const t0 = performance.now();
        try {
          return typeof listener === "function" ? listener.call(this, event) : listener.handleEvent(event);
        } finally {
          last.ms += performance.now() - t0;
          last.listeners++;
          last.done = true;
          save();
        }
      });
    }
    return byType.get(type);
  };
  proto.addEventListener = function (type, listener, options) {
    const wrap = LIFECYCLE.has(type) && listener && (typeof listener === "function" || typeof listener === "object");
    return add.call(this, type, wrap ? timed(type, listener) : listener, options);
  };
  proto.addEventListener.benchTimed = true;
  proto.removeEventListener = function (type, listener, options) {
    const wrapper = listener && wrappers.get(listener)?.get(type);
    return remove.call(this, type, wrapper ?? listener, options);
  };
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

// A task boundary without setTimeout's 4 ms clamp for nested timers.
const channel = new MessageChannel();
let wake = null;
channel.port1.onmessage = () => wake();
function nextTask() {
  return new Promise((resolve) => {
    wake = resolve;
    channel.port2.postMessage(0);
  });
}
