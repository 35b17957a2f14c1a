//! The config schema (`spool::schema::KEYS`) against everything it is the source of: the serde
//! structs (names, defaults), the engine's validation (ranges), the TypeScript types of
//! `pkg/spool.d.ts` and `edge.d.ts`, the edge middleware's own option names and the README's
//! tables. A test here fails when one of them drifts; `SPOOL_BLESS=1 cargo test --test schema`
//! rewrites the generated text in place (the types and the README tables).

// The generated text is kept out of the wasm build (see `spool::schema`).
#![cfg(not(target_arch = "wasm32"))]

use spool::engine::Config;
use spool::schema::{self, Owner, ShellOptions, KEYS};
use std::path::Path;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// Checks that `path` holds `expected` where the text from `start` up to the end of the
/// first `until` after it is; rewrites it when SPOOL_BLESS is set.
fn same_block(path: &str, start: &str, until: &str, expected: &str) {
    let text = read(path);
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("{path} has no {start:?}"));
    let to = from
        + text[from..]
            .find(until)
            .unwrap_or_else(|| panic!("{path}: no {until:?} after {start:?}"))
        + until.len();
    let found = &text[from..to];
    if found == expected {
        return;
    }
    if std::env::var_os("SPOOL_BLESS").is_some() {
        let mut new = String::from(&text[..from]);
        new.push_str(expected);
        new.push_str(&text[to..]);
        std::fs::write(Path::new(env!("CARGO_MANIFEST_DIR")).join(path), new).unwrap();
        return;
    }
    panic!(
        "{path} drifted from spool::schema::KEYS (SPOOL_BLESS=1 cargo test --test schema \
         rewrites it).\n--- expected ---\n{expected}\n--- found ---\n{found}"
    );
}

fn json<T: serde::Serialize>(value: &T) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(value).unwrap() {
        serde_json::Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

#[test]
fn every_serde_key_is_in_the_schema_with_its_default_and_no_other() {
    for (owner, fields) in [
        (Owner::Engine, json(&Config::default())),
        (Owner::Shell, json(&ShellOptions::default())),
    ] {
        let names: Vec<&str> = KEYS
            .iter()
            .filter(|k| k.owner == owner)
            .map(|k| k.name)
            .collect();
        let mut serde_names: Vec<&str> = fields.keys().map(String::as_str).collect();
        let mut sorted = names.clone();
        sorted.sort();
        serde_names.sort();
        assert_eq!(sorted, serde_names, "{owner:?} keys: schema vs serde");
        for k in KEYS.iter().filter(|k| k.owner == owner) {
            assert_eq!(
                fields[k.name].to_string(),
                k.default_json,
                "default of {}",
                k.name
            );
        }
    }
}

#[test]
fn the_engine_accepts_each_key_across_its_range_and_names_it_outside() {
    for k in KEYS.iter().filter(|k| k.owner == Owner::Engine) {
        let Some((min, max)) = k.bounds else { continue };
        let with = |n: u64| -> Result<(), &'static str> {
            // maxBackoffMs at its largest, so initialBackoffMs may reach its own.
            let text = format!(
                r#"{{"endpoint":"https://c.example/","apiKey":"phc_test","maxBackoffMs":3600000,"{}":{n}}}"#,
                k.name
            );
            let config: Config = serde_json::from_str(&text).unwrap();
            config.validate().map_err(|e| e.field)
        };
        assert_eq!(with(min), Ok(()), "{} at its minimum", k.name);
        assert_eq!(with(max), Ok(()), "{} at its maximum", k.name);
        if min > 0 {
            assert_eq!(with(min - 1), Err(k.name), "{} below its minimum", k.name);
        }
        assert_eq!(with(max + 1), Err(k.name), "{} above its maximum", k.name);
    }
}

#[test]
fn the_typescript_config_types_are_the_schemas() {
    same_block(
        "src/web/typescript.rs",
        "/** Settings for `new Exporter(config)`.",
        "\n}",
        &schema::exporter_config_ts(),
    );
    same_block(
        "src/web/edge.d.ts",
        "export interface EdgeOptions",
        "\n}",
        &schema::edge_options_ts(),
    );
}

#[test]
fn the_edge_middleware_takes_the_schemas_own_options() {
    let edge = read("src/web/edge.js");
    let own: Vec<String> = KEYS
        .iter()
        .filter(|k| k.owner == Owner::Edge && schema::exporter_key(k.name).is_none())
        .map(|k| format!("{:?}", k.name))
        .collect();
    let line = format!("const OWN_KEYS = [{}];", own.join(", "));
    assert!(edge.contains(&line), "edge.js should say: {line}");
}

#[test]
fn the_readme_configuration_tables_are_the_schemas() {
    same_block(
        "README.md",
        "| key | default | range |",
        "|\n\n",
        &(schema::readme_table(Owner::Engine) + "\n"),
    );
    same_block(
        "README.md",
        "| key | default | |",
        "|\n\n",
        &(schema::readme_table(Owner::Shell) + "\n"),
    );
}

#[test]
fn the_readme_rust_example_is_the_compiled_one() {
    let example = read("examples/rust_app.rs");
    let start = "    // README example start\n";
    let from = example.find(start).unwrap() + start.len();
    let to = example.find("    // README example end").unwrap();
    let code: String = example[from..to]
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .map(|l| format!("{l}\n"))
        .collect();
    let readme = read("README.md");
    assert!(
        readme.contains(&format!("```rust\n{code}```")),
        "README.md's Rust app example should be examples/rust_app.rs's:\n{code}"
    );
}
