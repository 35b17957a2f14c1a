//! Small statistics and formatting helpers for the benchmark's tables.

/** The median of `xs` (numbers); NaN for none. */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * The `p`-th percentile (0..100) of `xs` by the nearest-rank method; `Infinity` entries (events
 * never delivered) count as larger than everything.
 */
export function percentile(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * s.length));
  return s[rank - 1];
}

/** `{ median, min, max, n }` of `xs`. */
export function summary(xs) {
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs), n: xs.length };
}

/** A number with `digits` significant figures at most, thousands grouped ("1,234", "0.52"). */
export function num(x, digits = 3) {
  if (x === null || x === undefined || Number.isNaN(x)) return 'n/a';
  if (x === Infinity) return '∞';
  const abs = Math.abs(x);
  if (abs >= 10 ** digits) return Math.round(x).toLocaleString('en-US');
  if (abs === 0) return '0';
  const decimals = Math.max(0, digits - 1 - Math.floor(Math.log10(abs)));
  return x.toLocaleString('en-US', { maximumFractionDigits: decimals, minimumFractionDigits: 0 });
}

/** "median (min–max)" of a summary, formatted with `num`. */
export function spread(s, digits = 3, unit = '') {
  if (!s || Number.isNaN(s.median)) return 'n/a';
  if (s.n === 1 || num(s.min, digits) === num(s.max, digits)) return `${num(s.median, digits)}${unit}`;
  return `${num(s.median, digits)}${unit} (${num(s.min, digits)}–${num(s.max, digits)})`;
}

/** Bytes as "12,345 B (12.1 KiB)". */
export function bytes(n) {
  return `${Math.round(n).toLocaleString('en-US')} B (${(n / 1024).toFixed(1)} KiB)`;
}

/** A Markdown table from a header row and rows of cells. */
export function table(header, rows) {
  const line = (cells) => `| ${cells.map((c) => String(c).replaceAll('|', '\\|')).join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

/** `xs` rotated left by `k`: run r of a benchmark starts with a different contender. */
export function rotate(xs, k) {
  const n = xs.length;
  return xs.map((_, i) => xs[(i + k) % n]);
}
