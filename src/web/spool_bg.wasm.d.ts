// `import wasmUrl from "spool/spool_bg.wasm"`: the page's wasm as a bundler that copies it
// gives it, the URL of the copy (esbuild's `--loader:.wasm=file`, Parcel's `url:`), for
// `init({ module_or_path: wasmUrl })`. Bundlers that follow `new URL(..., import.meta.url)`
// (Vite, webpack) need no import: `init()` finds the wasm itself.
declare const wasmUrl: string;
export default wasmUrl;
