// A module Web Worker using spool: no window, no document. Started by worker.html; answers
// each message { endpoint, count } with the exporter's flush report and stats.
import init, { Exporter } from "/pkg/spool.js";

const ready = init();
self.onmessage = async ({ data }) => {
  try {
    await ready;
    const exporter = new Exporter({ endpoint: data.endpoint, apiKey: 'phc_test', flushIntervalMs: 60_000 });
    for (let i = 0; i < data.count; i++) exporter.capture("from worker", { i });
    const report = await exporter.flush();
    const shutdown = await exporter.shutdown();
    self.postMessage({ report, shutdown, stats: exporter.stats(), hasWindow: typeof window != "undefined" });
  } catch (e) {
    self.postMessage({ error: `${e.name}: ${e.message}` });
  }
};
