// The invariants the browser and the edge chaos tests both check against the collector's log
// (tests/e2e/chaos.test.mjs, tests/edge/chaos.test.mjs), and the fates both draw.

/** The chaos weights: mostly 200, and every fault often enough to be drawn in a short run. */
export const CHAOS_WEIGHTS = Object.freeze({
  ok: 60,
  badRequest: 3,
  retryAfterSeconds: 4,
  retryAfterDate: 3,
  e500: 5,
  e503: 8,
  stall: 3,
  reset: 4,
  acceptThen500: 5,
});

/**
 * An event is accepted twice only after an acceptance the sender never took a 2xx for.
 * `accepted`: uuid -> the collector entries that accepted it, in arrival order;
 * `acknowledged(entry)`: whether the sender took a 2xx answer for that entry; `sender` names
 * it in messages ("page", "Worker"). Returns { duplicated, duplicateCauses }.
 */
export function checkDuplicates(accepted, acknowledged, sender, violate) {
  const gaveUp = `ok answered after the ${sender} gave up`;
  const duplicateCauses = {};
  let duplicated = 0;
  for (const [uuid, entries] of accepted) {
    if (entries.length < 2) continue;
    duplicated++;
    for (const e of entries.slice(0, -1)) {
      if (acknowledged(e)) violate(`event ${uuid} was sent again after entry ${e.seq} acknowledged it`);
      const cause = e.fate === 'ok' ? gaveUp : e.fate;
      if (!['acceptThen500', 'stall', gaveUp].includes(cause)) {
        violate(`event ${uuid}: accepted twice, the first time by a ${cause}`);
      }
      duplicateCauses[cause] = (duplicateCauses[cause] ?? 0) + 1;
    }
  }
  return { duplicated, duplicateCauses };
}

/**
 * A request the sender sent after it had taken an answer naming a Retry-After deadline arrives
 * at or after that deadline (both clocks are this machine's); requests sent before the answer
 * was taken were already on their way. `deadlines`: [sequence when taken, until, entry];
 * `sends`: [sequence when sent, entry], both on the sender's one counter. `describe(entry)`
 * names an entry in messages; `each(entry, gate)`, if given, sees every send with the deadline
 * in force.
 */
export function checkRetryAfter(deadlines, sends, violate, describe = (e) => `entry ${e.seq}`, each = () => {}) {
  const byTaken = [...deadlines].sort((x, y) => x[0] - y[0]);
  const bySent = [...sends].sort((x, y) => x[0] - y[0]);
  let gate = 0;
  let gateFrom = null;
  let d = 0;
  for (const [sentSeq, e] of bySent) {
    while (d < byTaken.length && byTaken[d][0] < sentSeq) {
      if (byTaken[d][1] > gate) [gate, gateFrom] = [byTaken[d][1], byTaken[d][2]];
      d++;
    }
    if (e.receivedAt < gate) {
      violate(`${describe(e)} arrived at ${e.receivedAt}, before the Retry-After deadline ${gate} of ${describe(gateFrom)}`);
    }
    each(e, gate);
  }
}
