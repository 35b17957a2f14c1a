// The README's Worker quick start in TypeScript: Workers import a `.wasm` as a compiled module.
import wasm from "spool/spool_edge_bg.wasm";
import { initSync, withTelemetry, type EdgeOptions } from "spool/edge.js";
initSync({ module: wasm });                    // once per isolate, at module scope: no I/O happens

const app = { fetch: (request: Request) => new Response("hello") };   // the Worker's own handler
export default withTelemetry(app);

// With options, as docs/edge.md lists them.
const options: EdgeOptions = { flushIntervalMs: 500, captureHeaders: ["user-agent"] };
export const withOptions = withTelemetry(app, options);
