// A package from a plain `wasm-pack build --target web --release` (no std rebuild, no
// minify.mjs: what a user of the crate gets) works: in Node, whose globals (fetch, Headers,
// AbortController, setTimeout, crypto) are the ones the shell uses, it captures, flushes,
// sends a lingering event on its timer, shuts down, and names a bad config key.
//
//   node tests/plain-build.mjs <pkg-dir>      (`make test-plain` builds the package first)

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { startCollector } from '../tools/collector.mjs';

const dir = path.resolve(process.argv[2] ?? 'target/pkg-plain');
const { initSync, Exporter } = await import(pathToFileURL(path.join(dir, 'spool.js')));
initSync({ module: fs.readFileSync(path.join(dir, 'spool_bg.wasm')) });
const collector = await startCollector();
try {
  const exporter = new Exporter({ endpoint: `${collector.url}/batch/`, apiKey: 'phc_plain', flushIntervalMs: 50 });
  exporter.capture('flushed', { n: 1 });
  assert.deepEqual(await exporter.flush(), { delivered: 1, dropped: 0 });
  exporter.capture('lingering', { n: 2 });
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.equal(exporter.stats().delivered, 2, 'the timer sent the lingering event');
  assert.deepEqual(await exporter.shutdown({ timeoutMs: 500 }), { delivered: 0, dropped: 0, abandoned: 0 });
  const names = collector.log().batches.flatMap((b) => b.body.batch.map((e) => e.event));
  assert.deepEqual(names, ['flushed', 'lingering']);
  assert.throws(
    () => new Exporter({ endpoint: 'https://c.test/', maxBatchEvents: '9' }),
    (e) => e.name === 'SpoolConfigError' && e.field === 'maxBatchEvents',
  );
  console.log(`plain build: ${dir} captures, flushes, lingers, shuts down and names a bad key`);
} finally {
  await collector.close();
}
