// Fails when code crosses the line between the server and the TypeScript agent (agents/typescript),
// which is a package of its own built only on the protocol:
//  - the agent imports only its own files, Node's built-ins and the packages its package.json names
//    (devDependencies in its tests only), so it never comes to lean on server code or on a package
//    it would not bring when installed alone;
//  - the server's code (src/, bench/, test/, scripts/ and the root's config files) reaches the agent
//    only as a program, by running its CLI, or through an entry its package.json `exports` lists;
//    never by a path into the package, which would skip `exports`.
// Every import, export-from, dynamic import() and require() with a literal specifier is checked.
import fs from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = fileURLToPath(new URL('..', import.meta.url));
const agentDir = path.join(root, 'agents', 'typescript');
const agentPackage = JSON.parse(fs.readFileSync(path.join(agentDir, 'package.json'), 'utf8')) as {
  name: string;
  exports?: Record<string, string>;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
};
const SOURCE = /\.(?:c|m)?(?:t|j)sx?$/;
const SKIP = new Set(['node_modules', 'dist', '.git', '.data', 'coverage', '.vitest-tmp']);

function sourceFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return SKIP.has(entry.name) ? [] : sourceFiles(full);
    return SOURCE.test(entry.name) && !entry.name.endsWith('.d.ts') ? [full] : [];
  });
}

function specifiers(file: string): string[] {
  return ts.preProcessFile(fs.readFileSync(file, 'utf8'), true, true).importedFiles.map((f) => f.fileName);
}

const isInside = (dir: string, file: string) => {
  const rel = path.relative(dir, file);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
};
const packageName = (spec: string) => spec.split('/').slice(0, spec.startsWith('@') ? 2 : 1).join('/');
const isBuiltin = (spec: string) => spec.startsWith('node:') || builtinModules.includes(packageName(spec));

function agentViolation(file: string, spec: string): string | undefined {
  if (spec.startsWith('.') || path.isAbsolute(spec)) {
    return isInside(agentDir, path.resolve(path.dirname(file), spec)) ? undefined : 'leaves the agent package';
  }
  if (isBuiltin(spec)) return undefined;
  const name = packageName(spec);
  if (agentPackage.dependencies?.[name]) return undefined;
  const isTest = /\.test\.[cm]?[tj]sx?$/.test(file);
  if (isTest && agentPackage.devDependencies?.[name]) return undefined;
  return `is not among the agent's ${isTest ? 'dependencies or devDependencies' : 'dependencies'} (agents/typescript/package.json)`;
}

function serverViolation(file: string, spec: string): string | undefined {
  if (spec.startsWith('.') || path.isAbsolute(spec)) {
    return isInside(agentDir, path.resolve(path.dirname(file), spec))
      ? `reaches into the agent package by path; use its CLI or an entry of its exports (${Object.keys(agentPackage.exports ?? {}).join(', ') || 'none'})`
      : undefined;
  }
  if (packageName(spec) !== agentPackage.name) return undefined;
  const subpath = `.${spec.slice(agentPackage.name.length)}`;
  return agentPackage.exports?.[subpath] ? undefined : `is not an entry of the agent's exports`;
}

const problems: string[] = [];
const check = (files: string[], rule: (file: string, spec: string) => string | undefined) => {
  for (const file of files) {
    for (const spec of specifiers(file)) {
      const why = rule(file, spec);
      if (why) problems.push(`${path.relative(root, file)}: '${spec}' ${why}`);
    }
  }
};

const agentFiles = sourceFiles(agentDir);
const serverFiles = [
  ...['src', 'bench', 'test', 'scripts'].flatMap((dir) => sourceFiles(path.join(root, dir))),
  ...fs.readdirSync(root).filter((name) => SOURCE.test(name)).map((name) => path.join(root, name)),
];
check(agentFiles, agentViolation);
check(serverFiles, serverViolation);

if (problems.length > 0) {
  console.error('imports cross the boundary between the server and agents/typescript:');
  for (const problem of problems) console.error(`  ${problem}`);
  process.exit(1);
}
console.log(`agent boundary holds (${agentFiles.length} agent files, ${serverFiles.length} server files)`);
