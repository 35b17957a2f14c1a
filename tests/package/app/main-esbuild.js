// The README's way for esbuild (and any bundler that does not follow `new URL(...,
// import.meta.url)`): import the wasm as a file (`--loader:.wasm=file`), which gives its URL, and
// hand that to `init`.
import init, { Exporter } from "spool";
import wasmUrl from "spool/spool_bg.wasm";
import { run } from "./run.js";

run(init({ module_or_path: wasmUrl }), Exporter);
