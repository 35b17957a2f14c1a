// The package as a user installs it: `npm pack` of pkg/ (after `make build`), installed with
// npm into a project of its own (target/package-test), then
//   - its manifest has what resolvers read (exports, module, types, sideEffects, engines, files)
//     and the links of its pages (README.md, docs/) lead to files it ships;
//   - tsc, strict with skipLibCheck off on the es2022 and dom libs, accepts a page, the esbuild
//     way and a Worker (tests/package/types), with TypeScript 7 and 5.9 and each
//     moduleResolution they support;
//   - Node loads it with `initSync` and the wasm's bytes and delivers to the local collector;
//   - wrangler bundles a Worker that imports it as the README says (tests/package/worker);
//   - a tiny page (tests/package/app) built by Vite, webpack and esbuild (the README's way)
//     delivers its ten events to the local collector in headless Chromium.
//
//   node --test tests/package/        (`make test-package`; the bundlers and TypeScript are
//                                      devDependencies of the root package.json)

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { launchBrowser, openPage, startCollector, waitFor } from '../e2e/harness.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const fixtures = path.join(root, 'tests', 'package');
// Inside the repository, so that the fixtures' imports of vite, webpack and typescript resolve
// to the root's node_modules, while "spool" resolves to the copy installed here.
const project = path.join(root, 'target', 'package-test');
const installed = path.join(project, 'node_modules', 'spool');
const bin = (name) => path.join(root, 'node_modules', '.bin', name);

function run(command, args, options = {}) {
  return execFileSync(command, args, { cwd: project, encoding: 'utf8', stdio: 'pipe', ...options });
}

before(() => {
  assert.ok(fs.existsSync(path.join(root, 'pkg', 'package.json')), 'pkg/ is built (make build)');
  fs.rmSync(project, { recursive: true, force: true });
  fs.mkdirSync(project, { recursive: true });
  fs.cpSync(path.join(fixtures, 'app'), path.join(project, 'app'), { recursive: true });
  fs.cpSync(path.join(fixtures, 'types'), path.join(project, 'types'), { recursive: true });
  fs.cpSync(path.join(fixtures, 'worker'), path.join(project, 'worker'), { recursive: true });
  const tarball = run('npm', ['pack', path.join(root, 'pkg'), '--pack-destination', project, '--silent']).trim();
  fs.writeFileSync(
    path.join(project, 'package.json'),
    JSON.stringify({ name: 'spool-package-test', private: true, type: 'module' }, null, 2),
  );
  run('npm', ['install', '--no-audit', '--no-fund', '--no-package-lock', `./${tarball.split('\n').pop()}`]);
});

test('the manifest names the entries, the wasm files, their types and what has no side effects', () => {
  const manifest = JSON.parse(fs.readFileSync(path.join(installed, 'package.json'), 'utf8'));
  assert.equal(manifest.module, 'spool.js');
  assert.equal(manifest.types, 'spool.d.ts');
  assert.equal(manifest.sideEffects, false);
  assert.ok(manifest.engines?.node, 'engines.node');
  for (const [subpath, target] of Object.entries(manifest.exports)) {
    for (const file of typeof target === 'string' ? [target] : Object.values(target)) {
      assert.ok(fs.existsSync(path.join(installed, file)), `exports["${subpath}"] ${file} is shipped`);
    }
  }
  for (const subpath of ['.', './edge.js', './spool_bg.wasm', './spool_edge_bg.wasm']) {
    assert.ok(manifest.exports[subpath]?.types, `exports["${subpath}"] has types`);
  }
});

test("the package's pages link only to files it ships", () => {
  const docs = fs.readdirSync(path.join(installed, 'docs')).map((f) => `docs/${f}`);
  const pages = ['README.md', 'CONTRIBUTING.md', ...docs]
    .filter((f) => f.endsWith('.md'));
  const broken = [];
  for (const page of pages) {
    const text = fs.readFileSync(path.join(installed, page), 'utf8');
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/.test(target) || target.startsWith('#')) continue;
      const file = path.join(installed, path.dirname(page), target.split('#')[0]);
      if (!fs.existsSync(file)) broken.push(`${page}: ${target}`);
    }
  }
  assert.deepEqual(broken, []);
});

// TypeScript 7 no longer has the node10 resolution; 5.9 still does, and projects still use it.
const compilers = [
  { name: 'TypeScript 7', tsc: [bin('tsc')], resolutions: ['bundler', 'nodenext'] },
  {
    name: 'TypeScript 5.9',
    tsc: [process.execPath, path.join(root, 'node_modules', 'typescript-5', 'bin', 'tsc')],
    resolutions: ['bundler', 'nodenext', 'node10'],
  },
];
for (const { name, tsc, resolutions } of compilers) {
  for (const resolution of resolutions) {
    test(`${name}, moduleResolution ${resolution}: a page, the esbuild way and a Worker type-check`, () => {
      const module = resolution === 'nodenext' ? 'nodenext' : 'es2022';
      const args = ['-p', 'types/tsconfig.json', '--moduleResolution', resolution, '--module', module];
      try {
        run(tsc[0], [...tsc.slice(1), ...args]);
      } catch (e) {
        assert.fail(`tsc ${args.join(' ')} failed:\n${e.stdout}${e.stderr}`);
      }
    });
  }
}

test('Node: initSync with the wasm bytes, then events arrive', async () => {
  const collector = await startCollector();
  try {
    // Asynchronously, so that this process's collector can answer.
    const { execFile } = await import('node:child_process');
    const out = await new Promise((resolve, reject) =>
      execFile(process.execPath, ['app/node.mjs', collector.url], { cwd: project }, (e, stdout, stderr) =>
        e ? reject(new Error(`${e.message}\n${stderr}`)) : resolve(stdout),
      ),
    );
    assert.deepEqual(JSON.parse(out), { delivered: 10, dropped: 0 });
    assert.equal(collector.log().batches.flatMap((b) => b.body.batch).length, 10);
  } finally {
    await collector.close();
  }
});

test('a Worker importing the package bundles with wrangler, the edge wasm as a module', () => {
  const out = run(bin('wrangler'), ['deploy', '--dry-run', '--outdir', '../dist/worker'], {
    cwd: path.join(project, 'worker'),
    env: { ...process.env, WRANGLER_SEND_METRICS: 'false' },
  });
  assert.match(out, /Total Upload/);
  const files = fs.readdirSync(path.join(project, 'dist', 'worker'));
  assert.ok(files.some((f) => f.endsWith('spool_edge_bg.wasm')), `the wasm is a module of its own: ${files}`);
});

const dist = (bundler) => path.join(project, 'dist', bundler);
const page = (script) =>
  `<!doctype html><meta charset="utf-8"><script type="module" src="./${script}"></script>\n`;
const bundlers = {
  async vite() {
    const { build } = await import('vite');
    await build({
      root: path.join(project, 'app'),
      configFile: false,
      logLevel: 'warn',
      build: { outDir: dist('vite'), emptyOutDir: true },
    });
  },
  async webpack() {
    const { default: webpack } = await import('webpack');
    const stats = await new Promise((resolve, reject) =>
      webpack(
        {
          mode: 'production',
          context: path.join(project, 'app'),
          entry: './main.js',
          output: { path: dist('webpack'), filename: 'main.js' },
          performance: { hints: false },
        },
        (e, s) => (e ? reject(e) : resolve(s)),
      ),
    );
    assert.ok(!stats.hasErrors(), stats.toString('errors-only'));
    fs.writeFileSync(path.join(dist('webpack'), 'index.html'), page('main.js'));
  },
  async esbuild() {
    const { build } = await import('esbuild');
    await build({
      absWorkingDir: project,
      entryPoints: ['app/main-esbuild.js'],
      bundle: true,
      minify: true,
      format: 'esm',
      loader: { '.wasm': 'file' },
      outdir: dist('esbuild'),
      logLevel: 'warning',
    });
    fs.writeFileSync(path.join(dist('esbuild'), 'index.html'), page('main-esbuild.js'));
  },
};

let browser;
after(() => browser?.close());

for (const [bundler, bundle] of Object.entries(bundlers)) {
  test(`${bundler}: a production build finds the wasm in Chromium and its 10 events arrive`, async () => {
    await bundle();
    browser ??= await launchBrowser();
    // The collector serves the built app too: the page sends to its own origin.
    const collector = await startCollector({ root: dist(bundler) });
    const opened = await openPage(browser, `${collector.url}/index.html`);
    try {
      const result = await waitFor(
        () => opened.page.evaluate(() => window.spoolResult ?? (window.spoolError && { error: window.spoolError })),
        { timeoutMs: 10_000, message: `the ${bundler} page's flush` },
      ).catch((e) => {
        throw new Error(`${e.message}\npage errors: ${opened.pageErrors.join('\n')}\nconsole: ${opened.consoleMessages.join('\n')}`);
      });
      assert.deepEqual(result, { delivered: 10, dropped: 0 });
      const events = collector.log().batches.flatMap((b) => b.body.batch.map((e) => e.properties.n));
      assert.deepEqual(events.sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    } finally {
      await opened.close();
      await collector.close();
    }
  });
}
