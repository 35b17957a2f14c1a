// Figure 6: the same trivial handler wrapped by spool's edge middleware. bench/edge.mjs runs it
// only when the built package exports `withTelemetry`. The collector's URL comes in the
// SPOOL_ENDPOINT binding.
import * as spool from "../../pkg/spool.js";
import wasm from "../../pkg/spool_bg.wasm";

spool.initSync({ module: wasm });

const handler = {
  fetch() {
    return new Response("ok");
  },
};

let wrapped;

export default {
  fetch(request, env, ctx) {
    wrapped ??= spool.withTelemetry(handler, { endpoint: env.SPOOL_ENDPOINT, apiKey: "edge-bench" });
    return wrapped.fetch(request, env, ctx);
  },
};
