// The README's Worker quick start, importing the installed package: wrangler resolves
// "spool/edge.js" and "spool/spool_edge_bg.wasm" through the package's `exports` and bundles
// the wasm as a compiled module.
import wasm from "spool/spool_edge_bg.wasm";
import { initSync, withTelemetry } from "spool/edge.js";
initSync({ module: wasm });

const app = { fetch: () => new Response("hello") };
export default withTelemetry(app);
