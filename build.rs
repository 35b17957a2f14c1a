//! Says, before the tests run, what a fresh clone lacks for them. It never fails a build and does
//! nothing outside this repository's own checkout (a program that depends on spool has no
//! `tools/`).
//!
//! `tests/otlp_parser.rs` parses OTLP bodies with Python's official protobuf bindings; without
//! them it would fail with a Python traceback, deep inside the test.

use std::path::Path;
use std::process::Command;

/// The modules tools/otlp_parse.py imports.
const PYTHON_CHECK: &str =
    "import google.protobuf, opentelemetry.proto.collector.logs.v1.logs_service_pb2";

fn main() {
    println!("cargo:rerun-if-changed=requirements.txt");
    println!("cargo:rerun-if-changed=build.rs");
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default();
    let in_checkout = Path::new(&manifest_dir)
        .join("tools/otlp_parse.py")
        .exists();
    let wasm = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|arch| arch == "wasm32");
    if !in_checkout || wasm {
        return;
    }
    let python_ready = Command::new("python3")
        .args(["-c", PYTHON_CHECK])
        .output()
        .is_ok_and(|out| out.status.success());
    if !python_ready {
        // A path that never exists: cargo runs this again at every build until the modules are
        // there, so the warning goes away once they are installed.
        let out_dir = std::env::var("OUT_DIR").unwrap_or_default();
        println!("cargo:rerun-if-changed={out_dir}/python-modules-installed");
        println!(
            "cargo:warning=the OTLP tests need python3 with opentelemetry-proto and protobuf, \
             which are missing: run scripts/setup.sh (or python3 -m pip install -r \
             requirements.txt)"
        );
    }
}
