import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { openApiJson } from './openapi.document';

/**
 * Writes the OpenAPI document (default docs/openapi.json, relative to the working directory).
 *
 *   npx tsc -p tsconfig.build.json && node dist/apps/api/src/openapi/write-openapi.js [out.json]
 */
export function writeOpenApi(out = 'docs/openapi.json'): string {
  const path = resolve(out);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, openApiJson());
  return path;
}

if (require.main === module) {
  const path = writeOpenApi(process.argv[2]);
  console.log(`wrote ${path}`);
}
