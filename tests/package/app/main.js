// The README's page quick start, as Vite and webpack build it: `init()` finds the wasm through
// `new URL("spool_bg.wasm", import.meta.url)`, which both bundlers copy and rewrite.
import init, { Exporter } from "spool";
import { run } from "./run.js";

run(init(), Exporter);
