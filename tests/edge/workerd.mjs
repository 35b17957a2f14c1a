//! Helpers for the edge tests: Workers run in workerd through miniflare, offline.

import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Miniflare } from 'miniflare';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The example Worker's `compatibility_date`, from wrangler.toml, so the tests run what ships. */
export async function compatibilityDate() {
  const toml = await fs.readFile(path.join(ROOT, 'wrangler.toml'), 'utf8');
  const date = toml.match(/^compatibility_date\s*=\s*"([^"]+)"/m)?.[1];
  if (!date) throw new Error('wrangler.toml has no compatibility_date');
  return date;
}

/**
 * Collects what workerd prints (the Workers' console.log/warn/error land on its stdout and
 * stderr). Pass `attach` as miniflare's `handleRuntimeStdio`.
 */
export function runtimeLog() {
  let text = '';
  return {
    attach(stdout, stderr) {
      stdout.on('data', (d) => (text += d));
      stderr.on('data', (d) => (text += d));
    },
    text: () => text,
    /** The lines printed since `mark` (a previous `text().length`). */
    since: (mark) => text.slice(mark),
  };
}

/**
 * Starts a Worker whose module is `source` (it may import "./pkg/edge.js" and
 * "./pkg/spool_edge_bg.wasm": the built package, unbundled), with `bindings` as its env.
 * Returns { worker, log }; dispose `worker` when done.
 */
export async function startWorker(source, bindings = {}) {
  const log = runtimeLog();
  const worker = new Miniflare({
    modules: true,
    script: source,
    // Names the script, so its relative imports resolve from the repository root.
    scriptPath: path.join(ROOT, 'edge-test-worker.mjs'),
    modulesRoot: ROOT,
    modulesRules: [
      { type: 'ESModule', include: ['**/*.js'] },
      { type: 'CompiledWasm', include: ['**/*.wasm'] },
    ],
    compatibilityDate: await compatibilityDate(),
    bindings,
    cf: false,
    handleRuntimeStdio: log.attach,
  });
  await worker.ready.catch((e) => {
    throw new Error(`workerd did not start: ${e.message}\n${log.text()}`);
  });
  return { worker, log };
}

/** A Worker module: the package loaded as Workers load it, `handler` wrapped with `options`. */
export function wrappedWorker(handler, options) {
  return `
import wasm from "./pkg/spool_edge_bg.wasm";
import { initSync, withTelemetry } from "./pkg/edge.js";
initSync({ module: wasm });
export default withTelemetry(${handler}, ${JSON.stringify(options)});
`;
}
