import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { asyncApiJson } from './asyncapi';

/**
 * Writes the AsyncAPI document (default docs/asyncapi.json, relative to the working
 * directory). A script, so it may use Node; the rest of libs/contracts stays runtime-neutral.
 *
 *   npx tsc -p tsconfig.build.json && node dist/libs/contracts/src/schemas/write-asyncapi.js [out.json]
 */
export function writeAsyncApi(out = 'docs/asyncapi.json'): string {
  const path = resolve(out);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, asyncApiJson());
  return path;
}

if (require.main === module) {
  const path = writeAsyncApi(process.argv[2]);
  console.log(`wrote ${path}`);
}
