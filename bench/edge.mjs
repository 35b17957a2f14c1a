//! Figure 6: a Worker's CPU time per request with and without spool's edge middleware
//! (`withTelemetry`), in workerd through miniflare.
//!
//! Workers do not advance their clocks during CPU work, so the time cannot be read from inside.
//! It is read from outside instead: the CPU time of the workerd process (user + system, all its
//! threads, from /proc/PID/stat) while it serves `requests` requests one after another.
//! That includes workerd's own HTTP handling, the same for both variants, and everything the
//! middleware causes (its wasm, its batches sent in `waitUntil`, up to the arrival of the last
//! event at the collector): the ratio is what a Worker pays for telemetry on a trivial handler. A third Worker, the same handler posting its event
//! with plain `fetch` in `waitUntil`, is the floor for one collector request per Worker request.

import { execSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { percentile, rotate, summary } from './stats.mjs';

/** Whether the built package has the edge middleware (pkg/edge.js exporting withTelemetry). */
export function hasWithTelemetry(root) {
  const edge = path.join(root, 'pkg', 'edge.js');
  if (!fs.existsSync(edge)) return false;
  return /export\s+(?:async\s+)?function\s+withTelemetry\b|export\s*\{[^}]*\bwithTelemetry\b/.test(fs.readFileSync(edge, 'utf8'));
}

export async function edgeCpu({ root, collector, requests, runs, log }) {
  const { Miniflare } = await import('miniflare');
  const telemetry = hasWithTelemetry(root);
  // Both Workers load the same way (unbundled, from the repository), with the example
  // Worker's compatibility date.
  const worker = (name, file) => ({
    name,
    modules: true,
    modulesRoot: root,
    modulesRules: [
      { type: 'ESModule', include: ['**/*.js'] },
      { type: 'CompiledWasm', include: ['**/*.wasm'] },
    ],
    scriptPath: path.join(root, file),
    compatibilityDate: compatibilityDate(root),
    bindings: { SPOOL_ENDPOINT: collector.url + '/batch/' },
  });
  const workers = [worker('plain', 'bench/edge/plain.mjs'), worker('fetch', 'bench/edge/fetch.mjs')];
  if (telemetry) workers.push(worker('telemetry', 'bench/edge/telemetry.mjs'));
  const before = new Set(workerdPids());
  const mf = new Miniflare({ workers });
  try {
    await mf.ready;
    const pids = workerdPids().filter((p) => !before.has(p));
    if (pids.length === 0) throw new Error('no workerd process found under /proc');
    const cpu = () => pids.reduce((s, pid) => s + processCpuNs(pid), 0);
    const variants = telemetry ? ['plain', 'fetch', 'telemetry'] : ['plain', 'fetch'];
    const handles = Object.fromEntries(await Promise.all(variants.map(async (v) => [v, await mf.getWorker(v)])));
    const results = Object.fromEntries(variants.map((v) => [v, []]));
    // Per variant: collector requests per run, and each event's capture-to-arrival time.
    const wire = Object.fromEntries(variants.map((v) => [v, { requests: [], latencies: [] }]));
    let error = null;
    // Warm-up: compile, JIT, open connections.
    for (const v of variants) await serve(handles[v], 200).catch((e) => (error ??= e));
    if (telemetry) await arrived(collector, 400).catch((e) => (error ??= e));
    await new Promise((res) => setTimeout(res, 300));
    let received = eventsAt(collector);
    for (let r = 0; r < runs && !error; r++) {
      for (const v of rotate(variants, r)) {
        const first = collector.log().batches.length;
        const c0 = cpu();
        try {
          await serve(handles[v], requests);
        } catch (e) {
          error = e;
          break;
        }
        // The waitUntil work (what goes to the collector) finishes inside the measured window:
        // every event has arrived (withTelemetry's last batch waits out its flushIntervalMs).
        if (v != 'plain') await arrived(collector, received + requests);
        await new Promise((res) => setTimeout(res, 300));
        received = eventsAt(collector);
        const us = (cpu() - c0) / 1000 / requests;
        results[v].push(us);
        const entries = collector.log().batches.slice(first);
        wire[v].requests.push(entries.length);
        for (const e of entries) {
          for (const event of e.body?.batch ?? []) wire[v].latencies.push(e.receivedAt - Date.parse(event.timestamp));
        }
        log?.(`  run ${r + 1}/${runs} ${v}: ${us.toFixed(1)} µs CPU/request`);
      }
    }
    const over = (a, b) => (results[a].length ? summary(results[a].map((x, i) => x / results[b][i])) : null);
    const base = {
      telemetry,
      error: error ? String(error.message ?? error) : null,
      requests,
      runs,
      plain: summary(results.plain),
      fetch: results.fetch.length ? summary(results.fetch) : null,
      fetchRatio: over('fetch', 'plain'),
      wire: Object.fromEntries(
        Object.entries(wire)
          .filter(([v]) => v != 'plain')
          .map(([v, w]) => [
            v,
            {
              requests: w.requests.length ? summary(w.requests) : null,
              p50: percentile(w.latencies, 50),
              p95: percentile(w.latencies, 95),
            },
          ]),
      ),
    };
    if (!telemetry || error) return { ...base, withTelemetry: null, ratio: null, overFetch: null };
    return {
      ...base,
      withTelemetry: summary(results.telemetry),
      ratio: over('telemetry', 'plain'),
      overFetch: over('telemetry', 'fetch'),
    };
  } finally {
    await mf.dispose();
  }
}

/** The events the collector has received. */
function eventsAt(collector) {
  return collector.log().batches.reduce((n, b) => n + (b.body?.batch?.length ?? 0), 0);
}

/** Resolves once the collector has received `n` events (30 s at most). */
async function arrived(collector, n) {
  for (const deadline = Date.now() + 30_000; eventsAt(collector) < n; ) {
    if (Date.now() > deadline) throw new Error(`the collector received ${eventsAt(collector)} of ${n} events`);
    await new Promise((res) => setTimeout(res, 20));
  }
}

function compatibilityDate(root) {
  const toml = path.join(root, 'wrangler.toml');
  const date = fs.existsSync(toml) && fs.readFileSync(toml, 'utf8').match(/^compatibility_date\s*=\s*"([^"]+)"/m)?.[1];
  return date || '2025-01-01';
}

async function serve(worker, n) {
  for (let i = 0; i < n; i++) {
    const res = await worker.fetch(`http://bench.example/items/${i % 10}`);
    if (res.status !== 200) throw new Error(`the Worker answered ${res.status}: ${await res.text()}`);
    await res.arrayBuffer();
  }
}

function workerdPids() {
  return fs
    .readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return fs.readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'workerd';
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** CPU time (user + system) of `pid`, threads that have exited included, in ns. */
function processCpuNs(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1e9) / CLOCK_TICKS;
}

const CLOCK_TICKS = Number(execSync('getconf CLK_TCK').toString().trim()) || 100;
