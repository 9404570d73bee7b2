import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';

/**
 * The stage order of the README's Layout section, lowest first. A module may import from its
 * own folder, from a folder earlier in this list, and from the files at the top of src/
 * (defaults, errors, sqlstate); never from a later folder. Within the tree, no import cycle.
 */
const STAGES = [
  'util',
  'connect',
  'inventory',
  'plan',
  'ledger',
  'schema',
  'copy',
  'verify',
  'replicate',
  'fdw',
  'finish',
  'clone',
  'relay',
  'online',
  'cutover',
  'switch-first',
  'observe',
  'sandbox',
  'cli',
];

// Compiled to dist/test/, the sources are two levels up.
const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src');

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sourceFiles(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** -1 for src/*.ts (below every stage), else the folder's place in STAGES. */
function stageOf(file: string): number {
  const parts = path.relative(SRC, file).split(path.sep);
  return parts.length === 1 ? -1 : STAGES.indexOf(parts[0]!);
}

function importsOf(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8');
  const specs = [...text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)].map((m) => m[1]!);
  return specs.map((s) => path.resolve(path.dirname(file), s.replace(/\.js$/, '.ts')));
}

const files = sourceFiles(SRC);
const imports = new Map(files.map((f) => [f, importsOf(f)]));
const rel = (f: string) => path.relative(SRC, f);

test('every folder under src/ has its place in the stage order', () => {
  const folders = fs
    .readdirSync(SRC, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => e.name);
  assert.deepEqual(
    folders.filter((f) => !STAGES.includes(f)),
    [],
    'add the folder to STAGES here and to the README',
  );
});

test('imports only point down the stage order', () => {
  const upward = files.flatMap((f) =>
    imports
      .get(f)!
      .filter((t) => stageOf(t) > stageOf(f))
      .map((t) => `${rel(f)} -> ${rel(t)}`),
  );
  assert.deepEqual(upward, []);
});

test('no import cycle between modules', () => {
  const cycles: string[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (f: string): void => {
    state.set(f, 'open');
    stack.push(f);
    for (const t of imports.get(f) ?? []) {
      if (state.get(t) === 'open') cycles.push(stack.slice(stack.indexOf(t)).map(rel).join(' -> '));
      else if (!state.has(t)) visit(t);
    }
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of files) if (!state.has(f)) visit(f);
  assert.deepEqual(cycles, []);
});

test('the README lists the stages in this order', () => {
  const readme = fs.readFileSync(path.join(SRC, '../README.md'), 'utf8');
  const layout = readme.slice(readme.indexOf('Layout:'));
  const positions = STAGES.map((s) => layout.indexOf('`' + s + '/`'));
  assert.ok(
    positions.every((p) => p >= 0),
    `missing from the README: ${STAGES.filter((_, i) => positions[i]! < 0).join(', ')}`,
  );
  assert.deepEqual(
    [...positions].sort((a, b) => a - b),
    positions,
  );
});

test('importing the sandbox (as every command does, through demo) installs no signal handler', () => {
  const module = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src/sandbox/local-server.js');
  const out = execFileSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `const count = () => ['SIGINT', 'SIGTERM', 'SIGHUP', 'exit'].map((s) => process.listenerCount(s)).join(','); const before = count(); await import(${JSON.stringify(module)}); console.log(before === count() ? 'none' : count());`,
    ],
    { encoding: 'utf8' },
  );
  assert.equal(out.trim(), 'none');
});
