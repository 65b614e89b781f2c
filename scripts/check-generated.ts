// Fails when generated/ (and agents/go/generated/, agents/typescript/generated/) is not what `npm run generate` makes from the contracts: it regenerates and
// compares every file's hash before and after (no git needed), then lists what differed.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const generated = path.join(root, 'generated');
// The Go agent's stubs (agents/go/buf.gen.yaml) are generated from the same contracts.
const generatedGo = path.join(root, 'agents', 'go', 'generated');
// The TypeScript agent's stubs (the second output of buf.gen.yaml), inside its own package.
const generatedTs = path.join(root, 'agents', 'typescript', 'generated');

function snapshot(): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (dir: string) => {
    if (!fs.existsSync(dir)) return;
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else files.set(path.relative(root, full), createHash('sha256').update(fs.readFileSync(full)).digest('hex'));
    }
  };
  walk(generated);
  walk(generatedGo);
  walk(generatedTs);
  return files;
}

const before = snapshot();
execFileSync(process.execPath, ['--import', 'tsx', path.join(root, 'scripts', 'generate.ts')], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
const after = snapshot();

const changed = [...new Set([...before.keys(), ...after.keys()])].filter((file) => before.get(file) !== after.get(file)).sort();
if (changed.length > 0) {
  console.error('generated/ was out of date with openapi.yaml and contracts/ (now regenerated; commit the result):');
  for (const file of changed) console.error(`  ${before.has(file) ? (after.has(file) ? 'changed' : 'removed') : 'added'}: ${file}`);
  process.exit(1);
}
console.log(`generated/ matches the contracts (${after.size} files)`);
