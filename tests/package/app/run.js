// What every fixture page does once the wasm is loaded: capture ten events, flush, and leave
// the report on `window.spoolResult` for the test to read (or the error on `spoolError`).
export async function run(init, Exporter) {
  try {
    await init;
    const exporter = new Exporter({ endpoint: `${location.origin}/batch/`, apiKey: "phc_package" });
    for (let n = 0; n < 10; n++) exporter.capture("bundled", { n });
    window.spoolResult = await exporter.flush();
  } catch (e) {
    window.spoolError = String(e?.stack ?? e);
  }
}
