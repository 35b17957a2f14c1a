// Figure 6: the same trivial handler wrapped by spool's edge middleware, loaded as the README
// shows. bench/edge.mjs runs it only when the built package exports `withTelemetry`; the
// collector's URL comes in the SPOOL_ENDPOINT binding.
import wasm from "../../pkg/spool_edge_bg.wasm";
import { initSync, withTelemetry } from "../../pkg/edge.js";

initSync({ module: wasm });

export default withTelemetry(
  {
    fetch() {
      return new Response("ok");
    },
  },
  { apiKey: "edge-bench" },
);
