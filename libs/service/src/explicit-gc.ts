import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Makes `globalThis.gc` available without `node --expose-gc` on the command line, so a
 * service started as `jobline api` can give back the memory a burst of log traffic left in
 * Buffers (V8 frees them only in full collections; see the api's LogMemory). Called once, at
 * start-up, before anything reads `globalThis.gc`.
 */
export function enableExplicitGc(): void {
  const g = globalThis as { gc?: () => void };
  if (typeof g.gc === 'function') return;
  setFlagsFromString('--expose-gc');
  g.gc = runInNewContext('gc') as () => void;
}
