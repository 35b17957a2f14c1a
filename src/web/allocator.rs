//! The global allocator on wasm32: talc, about 1 KB of code where std's dlmalloc is about 7 KB.
//!
//! wasm32-unknown-unknown without the `atomics` target feature is single-threaded, which is
//! what talc's `WasmDynamicTalc` requires. Turned off with the crate's `talc` feature, for a
//! program that sets its own allocator.

#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();
