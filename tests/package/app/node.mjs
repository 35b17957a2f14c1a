// The README's Node quick start: `initSync` with the wasm's bytes, then capture and flush to
// the collector whose URL is the first argument. Prints the flush report as JSON.
import { readFileSync } from "node:fs";
import { initSync, Exporter } from "spool";

initSync({ module: readFileSync(new URL(import.meta.resolve("spool/spool_bg.wasm"))) });
const exporter = new Exporter({ endpoint: `${process.argv[2]}/batch/`, apiKey: "phc_package" });
for (let n = 0; n < 10; n++) exporter.capture("from_node", { n });
const report = await exporter.flush();
await exporter.shutdown();
console.log(JSON.stringify(report));
