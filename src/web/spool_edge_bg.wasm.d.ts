// `import wasm from "spool/spool_edge_bg.wasm"`: the edge middleware's wasm as Cloudflare Workers
// (wrangler, workerd) import a `.wasm` file, a compiled module, for `initSync({ module: wasm })`.
declare const wasm: WebAssembly.Module;
export default wasm;
