//! What spool keeps in this origin's `localStorage` for the next load, read for display, and
//! the demo's "Stored for the next load" panel that shows it.
//!
//! Each exporter writes its copy under `spool1:<format>:<endpoint>:<id>` (src/web/storage.rs).
//! The text is src/engine/page/persist.rs's: a header `spool3 <cut> <kept until>`, then packed
//! parts (`d<bytes>`, a newline, the events' lines raw-deflated, a character per byte) and,
//! after a `p` line, plain lines: one event each, `<capture ms> <uuid> <fragment>`. The page
//! only reads it; the exporter writes it when the page is hidden or goes away, removes it when
//! the page is back, and the next exporter of the same endpoint takes it and sends it.

const PREFIX = 'spool1:';
/** Stored events older than this when read back are dropped (PERSIST_MAX_AGE_MS: 7 days). */
const MAX_AGE_MS = 7 * 24 * 60 * 60 * 1000;
/** How often the panel reads storage again: the texts are inflated to count their events. */
const READ_MS = 1000;

const number = new Intl.NumberFormat('en-US');

/**
 * Every copy stored in `storage` now: `{ key, chars, jsonBytes, events, cut, keptUntil,
 * oldestMs, expiresAt }` (`chars`: what the copy takes in storage, a character per deflated
 * byte; `jsonBytes`: its events' lines inflated; `keptUntil`: until when its page may still
 * be running and sending them itself, 0 once it went away).
 */
export async function readStoredCopies(storage = localStorage) {
  const copies = [];
  for (let i = 0; i < storage.length; i++) {
    const key = storage.key(i);
    if (!key?.startsWith(PREFIX) || key.endsWith(':claim')) continue;
    const text = storage.getItem(key);
    const copy = text === null ? null : await readCopy(text);
    if (copy) copies.push({ key, ...copy });
  }
  return copies;
}

/** One stored text read: its header and the lines of every part; null if it is not a copy. */
async function readCopy(text) {
  const newline = text.indexOf('\n');
  const [magic, cut, keptUntil] = text.slice(0, newline).split(' ');
  if (newline < 0 || magic !== 'spool3') return null;
  const lines = [];
  let rest = text.slice(newline + 1);
  while (rest) {
    if (rest.startsWith('p\n')) {
      lines.push(...rest.slice(2).split('\n').filter(Boolean));
      break;
    }
    const head = /^d(\d+)\n/.exec(rest);
    if (!head) break;
    const start = head[0].length;
    const size = Number(head[1]);
    const bytes = Uint8Array.from(rest.slice(start, start + size), (c) => c.charCodeAt(0));
    lines.push(...(await inflate(bytes)).split('\n').filter(Boolean));
    rest = rest.slice(start + size);
  }
  const oldestMs = lines.length ? Math.min(...lines.map((l) => Number(l.slice(0, l.indexOf(' '))))) : null;
  return {
    chars: text.length,
    jsonBytes: lines.reduce((sum, l) => sum + l.length + 1, 0),
    events: lines.length,
    cut: Number(cut),
    keptUntil: Number(keptUntil),
    oldestMs,
    expiresAt: oldestMs === null ? null : oldestMs + MAX_AGE_MS,
  };
}

/** Raw deflate inflated by the browser, as text. */
async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate-raw'));
  return new Response(stream).text();
}

/**
 * The panel: reads storage every second and shows what is stored (events, size, when the
 * oldest expires, whose it is) beside what the exporter `stats()` says it holds and took in.
 * `els` are the panel's elements by role: { events, bytes, expires, note }. `exporter()`
 * returns the exporter, or null before there is one.
 */
export class StoragePanel {
  constructor(els, exporter) {
    this.els = els;
    this.exporter = exporter;
    /** The copies read last, for the scenario and the next page. */
    this.copies = [];
    this.read();
    setInterval(() => this.read(), READ_MS);
  }

  async read() {
    try {
      this.copies = await readStoredCopies();
    } catch (err) {
      this.copies = [];
      this.els.note.textContent = `Storage could not be read: ${err?.message ?? err}`;
      return;
    }
    this.show();
  }

  show() {
    const { els, copies } = this;
    const events = copies.reduce((sum, c) => sum + c.events, 0);
    const chars = copies.reduce((sum, c) => sum + c.chars, 0);
    const json = copies.reduce((sum, c) => sum + c.jsonBytes, 0);
    const expiries = copies.map((c) => c.expiresAt).filter((t) => t !== null);
    setText(els.events, number.format(events));
    setText(els.bytes, number.format(chars));
    setText(els.expires, expiries.length ? when(Math.min(...expiries)) : '—');
    setText(els.note, note(copies, json, this.exporter()?.stats()));
  }
}

/** What the numbers mean now, in a sentence or two. */
function note(copies, jsonBytes, stats) {
  const held = stats ? stats.queued + stats.inFlight : 0;
  const restored = stats?.restored ?? 0;
  const took = restored ? ` This page's exporter took in ${number.format(restored)} from an earlier load.` : '';
  if (copies.length === 0) {
    return `Nothing stored: the exporter writes what it holds (${number.format(held)} events now) ` +
      `when the page is hidden or goes away.${took}`;
  }
  // What another load may take now (src/engine/page/persist.rs's `claimable`).
  const claimable = copies.filter((c) => c.keptUntil <= Date.now()).length;
  const whose = claimable === copies.length
    ? 'left by a page that went away: the next exporter of this endpoint takes it and sends it'
    : `kept by a page still running until ${clock(Math.max(...copies.map((c) => c.keptUntil)))}`;
  return `${copies.length === 1 ? 'One copy' : `${copies.length} copies`}, ${number.format(jsonBytes)} bytes of ` +
    `events deflated, ${whose}.${took}`;
}

/** A time ahead, as the date and time it names. */
function when(ms) {
  const d = new Date(ms);
  return `${d.toLocaleDateString('en-GB', { weekday: 'short', day: 'numeric', month: 'short' })} ${clock(ms)}`;
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString('en-GB', { hour12: false });
}

// Writes only on change, so screen readers see no churn.
function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}
