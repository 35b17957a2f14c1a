// The README's Worker quick start in TypeScript: Workers import a `.wasm` as a compiled module.
import wasm from "spool/spool_edge_bg.wasm";
import { initSync, withTelemetry, type EdgeOptions } from "spool/edge.js";

initSync({ module: wasm });
const options: EdgeOptions = { flushIntervalMs: 500, captureHeaders: ["user-agent"] };
export default withTelemetry(
  { fetch: (request: Request) => new Response(`hello ${new URL(request.url).pathname}`) },
  options,
);
