// Runs under csp.html's policy: loads the package, captures, flushes, and records any
// violation of the policy, plus proof that the policy is in force (eval is refused).
import init, { Exporter } from "/pkg/spool.js";

window.violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.violations.push(`${e.violatedDirective} ${e.blockedURI}`);
});
try {
  // eslint-disable-next-line no-eval
  (0, eval)("1");
  window.evalBlocked = false;
} catch {
  window.evalBlocked = true;
}
try {
  await init();
  const collector = new URLSearchParams(location.search).get("collector") ?? location.origin;
  const exporter = new Exporter({ endpoint: collector + "/batch/", apiKey: "phc_csp" });
  for (let i = 0; i < 10; i++) exporter.capture("csp_event", { i });
  window.report = await exporter.flush();
} catch (err) {
  window.failure = String(err?.stack ?? err);
}
document.getElementById("out").textContent = "done";
window.done = true;
