#!/usr/bin/env node
// Completes pkg/ after `wasm-pack build` and minify.mjs: adds the edge middleware,
// `spool/edge.js` with its types, and the wasm it runs on, which a web page never downloads;
// gives each wasm a module declaration; ships the pages the README links to; and writes the
// package fields bundlers, Node and TypeScript resolve by.
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
const edgeWasm = ['spool_edge.js', 'spool_edge.d.ts', 'spool_edge_bg.wasm'];
// wasm-bindgen's `{name}_bg.wasm.d.ts` types the wasm's raw exports, which nothing imports.
// TypeScript reads that file for `import wasm from "spool/spool_edge_bg.wasm"` (it appends
// `.d.ts` to a path it has no types for), so it is replaced by a declaration of what a bundler
// or Workers hand such an import: the edge's wasm as a compiled module, the page's as a URL.
const wasmTypes = ['spool_bg.wasm.d.ts', 'spool_edge_bg.wasm.d.ts'];
// README.md (wasm-pack copies it too) and the pages it links to, so that its links work
// inside the installed package too.
const pages = ['README.md', 'ARCHITECTURE.md', 'BENCHMARKS.md', 'CONTRIBUTING.md', 'docs'];

for (const file of [...middleware, ...wasmTypes]) {
  fs.copyFileSync(path.join(root, 'src', 'web', file), path.join(pkg, file));
}
for (const file of edgeWasm) {
  const from = path.join(edgeBuild, file);
  if (!fs.existsSync(from)) {
    throw new Error(`finish-pkg: ${from} is missing: build the edge's wasm first (make build)`);
  }
  fs.copyFileSync(from, path.join(pkg, file));
}
for (const page of pages) {
  fs.cpSync(path.join(root, page), path.join(pkg, page), { recursive: true });
}

editManifest(pkg, (manifest) => {
  manifest.files = [
    ...new Set([...(manifest.files ?? []), ...middleware, ...edgeWasm, ...wasmTypes, ...pages]),
  ];
  // Both entries are ES modules; `exports` is what Node, bundlers and TypeScript (`bundler`,
  // `node16`) resolve, and `module`/`types` what older resolvers read.
  manifest.type = 'module';
  manifest.module = 'spool.js';
  manifest.types = 'spool.d.ts';
  manifest.exports = {
    '.': { types: './spool.d.ts', default: './spool.js' },
    './edge': { types: './edge.d.ts', default: './edge.js' },
    './edge.js': { types: './edge.d.ts', default: './edge.js' },
    './spool_bg.wasm': { types: './spool_bg.wasm.d.ts', default: './spool_bg.wasm' },
    './spool_edge_bg.wasm': { types: './spool_edge_bg.wasm.d.ts', default: './spool_edge_bg.wasm' },
    './package.json': './package.json',
  };
  // Node 20 is what the package is tested on (`initSync` with the wasm's bytes, `fetch`,
  // `CompressionStream`).
  manifest.engines = { node: '>=20' };
});
