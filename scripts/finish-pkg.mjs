#!/usr/bin/env node
// Completes pkg/ after `wasm-pack build`: adds the edge middleware, `spool/edge.js` with its
// types, which wires a Worker's requests to the wasm's EdgeCoalescer. It is a module of its own,
// not part of spool.js, so a web page never downloads it.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { editManifest } from './manifest.mjs';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const pkg = path.join(root, process.argv[2] ?? 'pkg');
const added = ['edge.js', 'edge.d.ts'];
for (const file of added) fs.copyFileSync(path.join(root, 'src', 'web', file), path.join(pkg, file));

editManifest(pkg, (manifest) => {
  manifest.files = [...new Set([...(manifest.files ?? []), ...added])];
});
