// A Rust app's bindings, built with spool's feature `js` off (`default-features = false`), carry
// none of spool's JavaScript API: no `Exporter` class, none of its TypeScript interfaces, no
// host.js snippet.
//
//   node tests/package/rust-app-bindings.mjs <wasm-pack out-dir>   (`make test-plain` builds it)

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

const dir = path.resolve(process.argv[2] ?? 'target/pkg-rust-app');
const glue = fs.readFileSync(path.join(dir, 'spool.js'), 'utf8');
const types = fs.readFileSync(path.join(dir, 'spool.d.ts'), 'utf8');
assert.doesNotMatch(glue, /class Exporter/, 'the glue has no Exporter class');
for (const name of ['Exporter', 'ExporterConfig', 'FlushReport', 'ExporterStats']) {
  assert.doesNotMatch(types, new RegExp(`\\b${name}\\b`), `the types have no ${name}`);
}
assert.ok(!fs.existsSync(path.join(dir, 'snippets')), 'no snippets/ (host.js)');
console.log(`rust app bindings: ${dir} carry no Exporter, no spool TypeScript, no snippet`);
