// Figure 6's floor for per-request telemetry: the trivial handler plus what any exporter that
// sends each request's event on its own must at least do in plain JavaScript: build the event,
// JSON.stringify it, and POST it to the collector inside ctx.waitUntil.
const DISTINCT_ID = "0190a3c1-7a2b-7c3d-8e4f-5a6b7c8d9e0f";

export default {
  fetch(request, env, ctx) {
    const started = Date.now();
    const response = new Response("ok");
    const event = {
      event: "http_request",
      distinct_id: DISTINCT_ID,
      properties: {
        method: request.method,
        host: new URL(request.url).host,
        path: new URL(request.url).pathname,
        status: response.status,
        duration_ms: Date.now() - started,
      },
      timestamp: new Date(started).toISOString(),
      uuid: crypto.randomUUID(),
    };
    const body = JSON.stringify({ api_key: "edge-bench", batch: [event], sent_at: new Date().toISOString() });
    ctx.waitUntil(
      fetch(env.SPOOL_ENDPOINT, { method: "POST", body, headers: { "Content-Type": "text/plain;charset=UTF-8" } })
        .then((r) => r.body?.cancel())
        .catch(() => {}),
    );
    return response;
  },
};
