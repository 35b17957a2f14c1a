// Minifies the built package in place, after wasm-pack (`make build` runs it):
//
// 1. The JavaScript: pkg/spool.js (wasm-bindgen's glue) and the files under pkg/snippets/ it
//    imports (our host.js), bundled by esbuild into one minified pkg/spool.js, so a page loads
//    one script instead of two, compressed together (about 400 bytes less gzipped than the two
//    minified apart). pkg/snippets/ is then removed, and with it from package.json. The exports
//    keep their names (`Exporter`, `initSync`, the default `init`).
// 2. The names the wasm imports its JavaScript functions by, and their module's name. wasm-bindgen names each one
//    after the function plus a 16-hex-digit hash (`__wbg_post_394069219d0753d2`), and every
//    name is written twice, in the wasm's import section and as a key of the glue's import
//    object; hashes do not compress. Each becomes a short name (`a`, `b`, ...) in both files,
//    which changes nothing else: a wasm import is matched to its function by name only. The
//    same for the exports named with such a hash (the closure shims the glue calls as
//    `wasm.wasm_bindgen__convert__closures_____invoke__h1e24d103cb78c5ab`); the exports a
//    caller may use (`memory`, `exporter_new`, ...) keep their names.
//
//    binaryen's wasm-opt cannot do this job (v132, checked): `--minify-imports` renames only
//    the imports of `env` and `wasi_*` modules, and `--minify-imports-and-exports[-and-modules]`
//    renames every export too, `memory` and `exporter_new` included, which `init()` hands to
//    its caller by name. So the import section is rewritten here, and wasm-opt does the rest.
//
// Every page downloads these files, and the size budget counts them gzipped, as it counts
// posthog-js's bundles, which ship minified; measuring ours unminified would compare a
// source file with a build. The .d.ts files are left as they are: they are for editors.
//
//   node scripts/minify.mjs [pkg-dir] [name]   prints each file's size before and after
//
// `name` is wasm-pack's `--out-name` (default `spool`): the files are `{name}.js` and
// `{name}_bg.wasm` (`make build` runs it for `spool` in pkg/ and for `spool_edge`, the edge
// middleware's wasm, in target/pkg-edge).

import fs from 'node:fs';
import path from 'node:path';
import { buildSync } from 'esbuild';
import { editManifest } from './manifest.mjs';

const pkg = path.resolve(process.argv[2] ?? 'pkg');
const NAME = process.argv[3] ?? 'spool';
const glue = path.join(pkg, `${NAME}.js`);
const wasm = path.join(pkg, `${NAME}_bg.wasm`);
// The module name wasm-bindgen gives every import of the wasm: the glue itself. It is written
// before each of the 50-odd imports, so it becomes one letter too.
const GLUE_MODULE = `./${NAME}_bg.js`;
const SHORT_MODULE = 'a';

function report(file, before, after) {
  console.log(`minify: ${path.relative(process.cwd(), file)} ${before} -> ${after} bytes`);
}

{
  const source = fs.readFileSync(glue, 'utf8');
  const [bundle] = buildSync({
    entryPoints: [glue],
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'neutral',
    write: false,
  }).outputFiles;
  fs.writeFileSync(glue, bundle.text);
  report(glue, source.length, bundle.text.length);
  fs.rmSync(path.join(pkg, 'snippets'), { recursive: true, force: true });
  // A build with --no-pack has no package.json.
  if (fs.existsSync(path.join(pkg, 'package.json'))) {
    editManifest(pkg, (manifest) => {
      manifest.files = manifest.files?.filter((f) => f !== 'snippets');
      // wasm-pack listed only the snippets, now bundled into the glue, which does nothing at
      // import but define functions and classes: a bundler may leave out what is unused.
      manifest.sideEffects = false;
    });
  }
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

// An export named after a hash, as wasm-bindgen names its closure shims.
const HASHED_EXPORT = /_h[0-9a-f]{16}$/;

/**
 * The wasm with every import from the glue and every hash-named export renamed, and the
 * renames as [old, new, isImport].
 */
function rename(bytes) {
  const parts = [bytes.subarray(0, 8)];
  const renames = [];
  const next = () => shortName(renames.length);
  let at = 8;
  while (at < bytes.length) {
    const id = bytes[at];
    const [size, start] = readU32(bytes, at + 1);
    const end = start + size;
    if (id !== 2 && id !== 7) {
      parts.push(bytes.subarray(at, end));
      at = end;
      continue;
    }
    let [count, i] = readU32(bytes, start);
    const entries = [u32(count)];
    for (let n = 0; n < count; n++) {
      let length;
      let module;
      if (id === 2) {
        [length, i] = readU32(bytes, i);
        module = bytes.subarray(i, i + length).toString();
        i += length;
      }
      [length, i] = readU32(bytes, i);
      let field = bytes.subarray(i, i + length).toString();
      i += length;
      // An import's description, or an export's kind byte and index.
      const description = bytes.subarray(i, (i = id === 2 ? skipDescription(bytes, i) : readU32(bytes, i + 1)[1]));
      if (id === 2 ? module === GLUE_MODULE : HASHED_EXPORT.test(field)) {
        const short = next();
        renames.push([field, short, id === 2]);
        field = short;
      }
      if (module === GLUE_MODULE) module = SHORT_MODULE;
      entries.push(...(id === 2 ? [name(module)] : []), name(field), description);
    }
    if (i !== end) throw new Error(`minify: section ${id} of ${wasm} does not add up`);
    const section = Buffer.concat(entries);
    parts.push(Buffer.from([id]), u32(section.length), section);
    at = end;
  }
  return [Buffer.concat(parts), renames];
}

const original = fs.readFileSync(wasm);
const [renamed, renames] = rename(original);
let code = fs.readFileSync(glue, 'utf8');
const before = code.length;
for (const [from, to, isImport] of renames) {
  // An import's name is a key of the import object and appears nowhere else; an export's is
  // read as a property of the exports (`.name`), once or more, and appears nowhere else.
  // Anything else means the glue is not shaped as expected, and the build stops rather than
  // ship a broken pair.
  const pattern = new RegExp(`\\b${from}\\b`, 'g');
  const found = code.match(pattern)?.length ?? 0;
  const asProperty = code.match(new RegExp(`\\.${from}\\b`, 'g'))?.length ?? 0;
  if (isImport ? found !== 1 : found === 0 || asProperty !== found) {
    throw new Error(`minify: ${from} appears ${found} times in ${glue}, unexpectedly`);
  }
  code = code.replace(pattern, to);
}
// The module's key in the import object, once.
const moduleKey = JSON.stringify(GLUE_MODULE) + ':';
if (code.split(moduleKey).length !== 2) throw new Error(`minify: ${moduleKey} is not in ${glue} once`);
code = code.replace(moduleKey, `${SHORT_MODULE}:`);
new WebAssembly.Module(renamed); // throws if the rewrite broke the binary
fs.writeFileSync(wasm, renamed);
fs.writeFileSync(glue, code);
report(wasm, original.length, renamed.length);
report(glue, before, code.length);
