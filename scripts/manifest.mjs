// The package's pkg/package.json, which wasm-pack writes and the build scripts after it amend.
import fs from 'node:fs';
import path from 'node:path';

/** Reads `pkg`/package.json, lets `edit` change it in place, and writes it back. */
export function editManifest(pkg, edit) {
  const file = path.join(pkg, 'package.json');
  const manifest = JSON.parse(fs.readFileSync(file, 'utf8'));
  edit(manifest);
  fs.writeFileSync(file, JSON.stringify(manifest, null, 2) + '\n');
}
