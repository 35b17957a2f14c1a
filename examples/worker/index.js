// An example Cloudflare Worker with spool as its telemetry middleware: every request it serves
// becomes an `http_request` event, delivered to SPOOL_ENDPOINT after the response, inside
// ctx.waitUntil. Run it with `npx wrangler dev` against the local collector (`make demo`), or
// see what would be uploaded with `npx wrangler deploy --dry-run --outdir dist`.
//
// In a project of your own, import from the package instead: "spool/edge.js" and
// "spool/spool_edge_bg.wasm" (the edge's wasm; a page's "spool/spool_bg.wasm" lacks the
// middleware's part).
import wasm from "../../pkg/spool_edge_bg.wasm";
import { initSync, withTelemetry } from "../../pkg/edge.js";

// Once per isolate, at module scope: instantiating the compiled module does no I/O.
initSync({ module: wasm });

/** The Worker's own handler: a few routes, one of which fails. */
const app = {
  async fetch(request) {
    const { pathname, searchParams } = new URL(request.url);
    if (pathname === "/boom") throw new Error("boom: the example handler failed");
    if (pathname === "/wait") {
      // I/O (here a timer) is what moves the clock in a Worker, so this shows in duration_ms.
      const ms = Math.min(Number(searchParams.get("ms")) || 0, 5000);
      await new Promise((resolve) => setTimeout(resolve, ms));
      return new Response(`waited ${ms} ms\n`);
    }
    if (pathname.startsWith("/items/")) {
      return Response.json({ id: pathname.slice("/items/".length), method: request.method });
    }
    if (pathname === "/") return new Response("hello from the edge\n");
    return new Response("not found\n", { status: 404 });
  },
};

export default withTelemetry(app);
