//! Figure 2: the bytes a page downloads for each contender, raw and gzipped (level 9, what a
//! CDN serves at best; brotli is given too).

import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';

/** The page package's budget: its wasm and glue, gzipped (DESIGN.md). */
export const BUDGET_GZIP = 36 * 1024;

function compressed(file) {
  const data = fs.readFileSync(file);
  return {
    raw: data.length,
    gzip: zlib.gzipSync(data, { level: 9 }).length,
    brotli: zlib.brotliCompressSync(data, {
      params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11 },
    }).length,
  };
}

function walk(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? walk(p) : [p];
  });
}

/**
 * `{ spool: { parts: [{ name, raw, gzip, brotli }], total }, posthog: [{ name, note, raw, gzip,
 * brotli }] }`. spool's total is what a page loads: the wasm and the glue (and any snippets
 * the glue imports; `make build` bundles them into it), each file compressed on its own, as a
 * server sends them.
 */
export function measureSizes(root) {
  const pkg = path.join(root, 'pkg');
  const files = [
    path.join(pkg, 'spool_bg.wasm'),
    path.join(pkg, 'spool.js'),
    ...walk(path.join(pkg, 'snippets')).filter((f) => f.endsWith('.js')),
  ];
  const parts = files.map((f) => ({ name: path.relative(root, f), ...compressed(f) }));
  const total = parts.reduce(
    (t, p) => ({ raw: t.raw + p.raw, gzip: t.gzip + p.gzip, brotli: t.brotli + p.brotli }),
    { raw: 0, gzip: 0, brotli: 0 },
  );

  const dist = path.join(root, 'node_modules', 'posthog-js', 'dist');
  const posthog = [
    ['module.slim.js', 'slim: the core without extensions (the smallest bundle it ships)'],
    ['module.js', 'default: `import posthog from "posthog-js"` in a bundler'],
    ['array.js', 'default, as the snippet loads it'],
    ['module.full.js', 'full: every extension bundled'],
  ]
    .filter(([f]) => fs.existsSync(path.join(dist, f)))
    .map(([f, note]) => ({ name: `posthog-js/dist/${f}`, note, ...compressed(path.join(dist, f)) }));
  return { spool: { parts, total }, posthog };
}
