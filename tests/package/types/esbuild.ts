// The README's way for esbuild: the page's wasm imported as a file gives its URL, for `init`.
import init from "spool";
import wasmUrl from "spool/spool_bg.wasm";

const url: string = wasmUrl;
await init({ module_or_path: url });
