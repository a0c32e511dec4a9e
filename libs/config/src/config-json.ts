import type { z } from 'zod';
import { ConfigError } from './load-config';

/**
 * The text of a JSON configuration file (JOBLINE_*_FILE) checked against its schema: a
 * ConfigError naming `variable`, the file and each problem's path, never a coerced value.
 */
export function parseConfigJson<S extends z.ZodType>(schema: S, text: string, path: string, variable: string): z.infer<S> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError([{ variable, message: `${path} is not JSON: ${err instanceof Error ? err.message : String(err)}` }]);
  }
  const r = schema.safeParse(json);
  if (!r.success) {
    throw new ConfigError(r.error.issues.map((i) => ({ variable, message: `${path}: ${i.path.map(String).join('.') || '(root)'}: ${i.message}` })));
  }
  return r.data;
}
