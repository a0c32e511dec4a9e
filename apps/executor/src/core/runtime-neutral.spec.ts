import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

/**
 * The executor's core runs unchanged under Node and Deno: everything it loads, followed
 * import by import (libs/contracts included), uses no Node, Nest or Deno API.
 */

const CORE = __dirname;
const ROOT = resolve(CORE, '../../../..');
/** Runtime-neutral npm packages the core may use. */
const ALLOWED_PACKAGES = new Set(['@nats-io/nats-core', '@nats-io/jetstream', '@nats-io/obj', 'zod', '@noble/hashes/sha2', '@opentelemetry/api']);
const FORBIDDEN_GLOBALS = /\b(process|Buffer|Deno|require|__dirname|__filename|setImmediate|NodeJS)\b\s*[.(<]|\bglobal\./;

/** Static (`import … from`, `export … from`, `import '…'`) and dynamic (`import('…')`) specifiers. */
const specifiers = (source: string) =>
  [...source.matchAll(/\b(?:import|export)\s[^;]*?\sfrom\s*'([^']+)'|\bimport\s*\(?\s*'([^']+)'/g)].map((m) => m[1] ?? m[2]);
const code = (source: string) => source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:])\/\/.*$/gm, '$1');

function resolveTs(from: string, spec: string): string {
  const base = resolve(dirname(from), spec);
  for (const candidate of [`${base}.ts`, join(base, 'index.ts'), base]) if (existsSync(candidate) && candidate.endsWith('.ts')) return candidate;
  throw new Error(`${relative(ROOT, from)}: cannot resolve ${spec}`);
}

/** Every file the core loads, with the problems found in each. */
function scan(): { files: string[]; problems: string[] } {
  const queue = readdirSync(CORE)
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.spec.ts'))
    .map((f) => join(CORE, f));
  const seen = new Set<string>();
  const problems: string[] = [];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const source = readFileSync(file, 'utf8');
    const where = relative(ROOT, file);
    for (const spec of specifiers(source)) {
      if (spec.startsWith('.')) queue.push(resolveTs(file, spec));
      else if (!ALLOWED_PACKAGES.has(spec)) problems.push(`${where} imports ${spec}`);
    }
    const global = FORBIDDEN_GLOBALS.exec(code(source));
    if (global) problems.push(`${where} uses ${global[0]}`);
  }
  return { files: [...seen].map((f) => relative(ROOT, f)), problems };
}

describe('the executor core', () => {
  it('loads only runtime-neutral code: no node:, Nest or Deno import, no Node or Deno global', () => {
    const { files, problems } = scan();
    expect(files).toEqual(expect.arrayContaining(['apps/executor/src/core/executor.ts', 'libs/contracts/src/index.ts']));
    expect(problems).toEqual([]);
  });

  it('would notice a Node import or global', () => {
    expect(specifiers(`import { spawn } from 'node:child_process';\nexport * from './a';\nimport 'b';\nconst c = Buffer.from('x');\nawait import('d');`)).toEqual([
      'node:child_process',
      './a',
      'b',
      'd',
    ]);
    expect(FORBIDDEN_GLOBALS.test(code('const b = Buffer.from(x);'))).toBe(true);
    expect(FORBIDDEN_GLOBALS.test(code('if (process.env.X) run();'))).toBe(true);
    expect(FORBIDDEN_GLOBALS.test(code('// the process. Buffer and Deno are named here only\nconst a = 1;'))).toBe(false);
  });
});
