//! posthog-js as the demo runs it beside spool: loaded from the collector (node_modules, never
//! the internet), sending to the same collector under its other name (`otherOrigin`), as a
//! site's posthog-js sends to PostHog's host, with what bench/pages/bench.js turns off turned
//! off (nothing is captured but what the page captures), and gzip-js on, as PostHog Cloud's
//! remote config turns it on.
//!
//! The other name keeps its requests off the page's own host: a browser opens at most six
//! HTTP/1.1 connections to one host, and requests a stalled collector holds there would keep
//! the next page from loading (spool keeps one free for the navigation; posthog-js does not).

/** The project key posthog-js writes into every event's properties. */
export const POSTHOG_TOKEN = 'phc_demo_posthog';

/** The same server under its other name: localhost for 127.0.0.1, and back. */
export function otherOrigin() {
  const url = new URL(location.origin);
  url.hostname = url.hostname === 'localhost' ? '127.0.0.1' : 'localhost';
  return url.origin;
}

/** posthog-js, initialised; resolves once it is loaded. */
export async function startPosthog() {
  const { default: posthog } = await import('/node_modules/posthog-js/dist/module.js');
  await new Promise((resolve) => {
    posthog.init(POSTHOG_TOKEN, {
      api_host: otherOrigin(),
      // Headless Chromium's user agent is on posthog-js's bot list: it would drop everything.
      opt_out_useragent_filter: true,
      // No remote config (/flags) request, nothing loaded from elsewhere, nothing captured but
      // what the page captures.
      advanced_disable_flags: true,
      advanced_disable_decide: true,
      disable_compression: false,
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
      loaded: () => resolve(),
    });
  });
  // What PostHog Cloud's remote config (not asked for here) would set.
  posthog.compression = 'gzip-js';
  return posthog;
}
