import { DenoFileReportOutbox } from '../file-report-outbox.deno';

/**
 * For the interop test: `deno run … outbox-tool.deno.ts <dir> <ops JSON>` opens the Deno outbox on
 * <dir>, prints what it lists, applies the ops ([["put", key, text] | ["remove", key]]) and prints
 * what it lists then, one JSON line each.
 */
const [dir, ops] = Deno.args;
const outbox = new DenoFileReportOutbox(dir);
console.log(JSON.stringify(await outbox.list()));
for (const [op, key, text] of JSON.parse(ops) as [string, string, string?][]) {
  if (op === 'put') await outbox.put(key, text ?? '');
  else await outbox.remove(key);
}
console.log(JSON.stringify(await outbox.list()));
