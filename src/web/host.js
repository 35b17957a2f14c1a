// What spool's browser shell cannot express as a binding. Everything else (fetch, timers,
// page listeners, sendBeacon, errors, plain objects) is web-sys, gloo-timers and
// serde-wasm-bindgen in Rust.

// "00" to "ff", for uuidText.
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/**
 * The canonical text of a uuid given as four 32-bit words, most significant first. Built
 * here rather than passed as a string from wasm: decoding 36 bytes with TextDecoder cost about
 * a fifth of a whole `capture` (measured with bench/profile.mjs).
 */
export function uuidText(a, b, c, d) {
  const word = (w) => HEX[w >>> 24] + HEX[(w >>> 16) & 255] + HEX[(w >>> 8) & 255] + HEX[w & 255];
  const x = word(b);
  const y = word(c);
  return `${word(a)}-${x.slice(0, 4)}-${x.slice(4)}-${y.slice(0, 4)}-${y.slice(4)}${word(d)}`;
}
