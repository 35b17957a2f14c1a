#!/usr/bin/env node
// Completes pkg/ after `wasm-pack build` and minify.mjs: adds the edge middleware,
// `spool/edge.js` with its types, and the wasm it runs on, which a web page never downloads.
//
//   node scripts/finish-pkg.mjs [pkg-dir] [edge-build-dir]
//
// The edge's wasm is a build of its own (`--features edge`, `--out-name spool_edge`, made by
// `make build` in target/pkg-edge): the page's wasm leaves out the EdgeCoalescer edge.js wires
// a Worker's requests to, so every page view downloads none of it. Its glue and wasm are copied
// here as `spool_edge.js` and `spool_edge_bg.wasm`; edge.js imports the one and re-exports its
// `initSync`, which a Worker calls with the other.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { editManifest } from './manifest.mjs';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const pkg = path.resolve(root, process.argv[2] ?? 'pkg');
const edgeBuild = path.resolve(root, process.argv[3] ?? 'target/pkg-edge');
const middleware = ['edge.js', 'edge.d.ts'];
const edgeWasm = ['spool_edge.js', 'spool_edge.d.ts', 'spool_edge_bg.wasm', 'spool_edge_bg.wasm.d.ts'];
for (const file of middleware) fs.copyFileSync(path.join(root, 'src', 'web', file), path.join(pkg, file));
for (const file of edgeWasm) {
  const from = path.join(edgeBuild, file);
  if (!fs.existsSync(from)) {
    throw new Error(`finish-pkg: ${from} is missing: build the edge's wasm first (make build)`);
  }
  fs.copyFileSync(from, path.join(pkg, file));
}

editManifest(pkg, (manifest) => {
  manifest.files = [...new Set([...(manifest.files ?? []), ...middleware, ...edgeWasm])];
});
