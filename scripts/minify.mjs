// Minifies the built package in place, after wasm-pack (`make build` runs it):
//
// 1. The JavaScript: pkg/spool.js (wasm-bindgen's glue) and every file under pkg/snippets/
//    (our host.js and its siblings), with esbuild. No `format` is given on purpose: esbuild then
//    keeps the names of exported declarations (`export class Exporter` stays `Exporter`, so
//    `exporter.constructor.name` does not change) and renames only what is private to a module.
// 2. The names the wasm imports its JavaScript functions by. wasm-bindgen names each one
//    after the function plus a 16-hex-digit hash (`__wbg_post_394069219d0753d2`), and every
//    name is written twice, in the wasm's import section and as a key of the glue's import
//    object; hashes do not compress. Each becomes a short name (`a`, `b`, ...) in both files,
//    which changes nothing else: a wasm import is matched to its function by name only.
//
// Every page downloads these files, and the size budget counts them gzipped, as it counts
// posthog-js's bundles, which ship minified; measuring ours unminified would compare a
// source file with a build. The .d.ts files are left as they are: they are for editors.
//
//   node scripts/minify.mjs [pkg-dir]     prints each file's size before and after

import fs from 'node:fs';
import path from 'node:path';
import { transformSync } from 'esbuild';

const pkg = path.resolve(process.argv[2] ?? 'pkg');
const glue = path.join(pkg, 'spool.js');
const wasm = path.join(pkg, 'spool_bg.wasm');
// The module name wasm-bindgen gives every import of the wasm: the glue itself.
const GLUE_MODULE = './spool_bg.js';

function walk(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? walk(p) : [p];
  });
}

function report(file, before, after) {
  console.log(`minify: ${path.relative(process.cwd(), file)} ${before} -> ${after} bytes`);
}

const scripts = [glue, ...walk(path.join(pkg, 'snippets'))].filter((f) => f.endsWith('.js'));
for (const file of scripts) {
  const source = fs.readFileSync(file, 'utf8');
  const { code } = transformSync(source, { minify: true, loader: 'js' });
  fs.writeFileSync(file, code);
  report(file, source.length, code.length);
}

// --- The import names -------------------------------------------------------------------------
// The wasm binary format (https://webassembly.github.io/spec/core/binary/): an 8-byte header,
// then sections, each an id byte and a LEB128 byte length. The import section (id 2) is a
// count, then per import: module name, field name (each a LEB128 length and UTF-8 bytes) and a
// description whose length depends on its kind.

function readU32(bytes, at) {
  let value = 0;
  let shift = 0;
  let byte;
  do {
    byte = bytes[at++];
    value |= (byte & 0x7f) << shift;
    shift += 7;
  } while (byte & 0x80);
  return [value >>> 0, at];
}

function u32(value) {
  const out = [];
  do {
    let byte = value & 0x7f;
    value >>>= 7;
    if (value) byte |= 0x80;
    out.push(byte);
  } while (value);
  return Buffer.from(out);
}

function name(text) {
  const bytes = Buffer.from(text);
  return Buffer.concat([u32(bytes.length), bytes]);
}

/** Where an import's description ends, from where it starts (its kind byte). */
function skipDescription(bytes, at) {
  const kind = bytes[at++];
  const limits = (i) => {
    const flags = bytes[i++];
    [, i] = readU32(bytes, i);
    if (flags & 1) [, i] = readU32(bytes, i);
    return i;
  };
  switch (kind) {
    case 0: // function: type index
      return readU32(bytes, at)[1];
    case 1: // table: reference type, limits
      return limits(at + 1);
    case 2: // memory: limits
      return limits(at);
    case 3: // global: value type, mutability
      return at + 2;
    case 4: // tag: attribute, type index
      return readU32(bytes, at + 1)[1];
    default:
      throw new Error(`minify: unknown import kind ${kind} in ${wasm}`);
  }
}

/** `a` ... `z`, `A` ... `Z`, then `a1` ...: short, distinct, valid JavaScript identifiers. */
function shortName(i) {
  const letters = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
  const round = Math.floor(i / letters.length);
  return letters[i % letters.length] + (round ? round.toString(36) : '');
}

/** The wasm with every import from the glue renamed, and the renames as [old, new]. */
function renameImports(bytes) {
  const parts = [bytes.subarray(0, 8)];
  const renames = [];
  let at = 8;
  while (at < bytes.length) {
    const id = bytes[at];
    const [size, start] = readU32(bytes, at + 1);
    const end = start + size;
    if (id !== 2) {
      parts.push(bytes.subarray(at, end));
      at = end;
      continue;
    }
    let [count, i] = readU32(bytes, start);
    const imports = [u32(count)];
    for (let n = 0; n < count; n++) {
      let length;
      [length, i] = readU32(bytes, i);
      const module = bytes.subarray(i, i + length).toString();
      i += length;
      [length, i] = readU32(bytes, i);
      let field = bytes.subarray(i, i + length).toString();
      i += length;
      const description = bytes.subarray(i, (i = skipDescription(bytes, i)));
      if (module === GLUE_MODULE) {
        const short = shortName(renames.length);
        renames.push([field, short]);
        field = short;
      }
      imports.push(name(module), name(field), description);
    }
    if (i !== end) throw new Error(`minify: the import section of ${wasm} does not add up`);
    const section = Buffer.concat(imports);
    parts.push(Buffer.from([2]), u32(section.length), section);
    at = end;
  }
  return [Buffer.concat(parts), renames];
}

const original = fs.readFileSync(wasm);
const [renamed, renames] = renameImports(original);
let code = fs.readFileSync(glue, 'utf8');
const before = code.length;
for (const [from, to] of renames) {
  // Each name is a key of the import object, and appears nowhere else; anything else means
  // the glue is not shaped as expected, and the build stops rather than ship a broken pair.
  const pattern = new RegExp(`\\b${from}\\b`, 'g');
  const found = code.match(pattern)?.length ?? 0;
  if (found !== 1) throw new Error(`minify: ${from} appears ${found} times in ${glue}, not once`);
  code = code.replace(pattern, to);
}
new WebAssembly.Module(renamed); // throws if the rewrite broke the binary
fs.writeFileSync(wasm, renamed);
fs.writeFileSync(glue, code);
report(wasm, original.length, renamed.length);
report(glue, before, code.length);
