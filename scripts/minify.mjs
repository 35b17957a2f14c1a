// Minifies the JavaScript of the built package in place: pkg/spool.js (wasm-bindgen's glue)
// and every file under pkg/snippets/ (our host.js and its siblings), with esbuild. `make build`
// runs it after wasm-pack.
//
// Every page downloads these files, and the size budget counts them gzipped, as it counts
// posthog-js's bundles, which ship minified; measuring ours unminified would compare a
// source file with a build. The .d.ts files are left as they are: they are for editors.
//
// No `format` is given on purpose: esbuild then keeps the names of exported declarations
// (`export class Exporter` stays `Exporter`, so `exporter.constructor.name` does not change)
// and renames only what is private to the module.
//
//   node scripts/minify.mjs [pkg-dir]     prints each file's size before and after

import fs from 'node:fs';
import path from 'node:path';
import { transformSync } from 'esbuild';

const pkg = path.resolve(process.argv[2] ?? 'pkg');

function walk(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? walk(p) : [p];
  });
}

const files = [path.join(pkg, 'spool.js'), ...walk(path.join(pkg, 'snippets'))].filter((f) =>
  f.endsWith('.js'),
);
for (const file of files) {
  const source = fs.readFileSync(file, 'utf8');
  const { code } = transformSync(source, { minify: true, loader: 'js' });
  fs.writeFileSync(file, code);
  console.log(`minify: ${path.relative(process.cwd(), file)} ${source.length} -> ${code.length} bytes`);
}
