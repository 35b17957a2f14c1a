// A page in TypeScript, as the README's quick start writes it: the config, the capture options
// and the reports are typed.
import init, { Exporter, type ExporterConfig, type FlushReport } from "spool";

await init();
const config: ExporterConfig = { endpoint: "https://collector.example/batch/", apiKey: "phc_..." };
const exporter = new Exporter(config);
const uuid: string | undefined = exporter.capture("signup", { plan: "pro" }, { distinctId: "user-7" });
const report: FlushReport = await exporter.flush();
console.log(uuid, report.delivered, exporter.stats().dropped.queueFull);
exporter.free();
