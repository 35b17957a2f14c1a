//! The global allocator on wasm32: talc, a well-kept allocator made for WebAssembly, whose code
//! is smaller than std's dlmalloc (measured: see BENCHMARKS.md's size figure) and which grows
//! the wasm memory as it needs. wasm32-unknown-unknown without the `atomics` target feature is
//! single-threaded, so it needs no lock. Turned off with the crate's `allocator` feature, for a
//! program that sets its own allocator.

#[global_allocator]
static TALC: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();
