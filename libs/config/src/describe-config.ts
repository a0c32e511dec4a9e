import { shownValue, type JoblineConfig } from './load-config';
import { VARIABLES, VARIABLE_NAMES, type Service, type VariableSpec } from './variables';

/** One line of `jobline config`: a variable, the value in force (masked), and where it came from. */
export interface EffectiveVariable {
  name: string;
  value: string;
  source: 'set' | 'default';
  services: readonly Service[];
}

/**
 * The effective configuration as `jobline config` prints it: every variable with the value
 * set (masked) or its documented default. `env` is the environment loadConfig read.
 */
export function effectiveVariables(config: JoblineConfig, env: Readonly<Record<string, string | undefined>>): EffectiveVariable[] {
  return VARIABLE_NAMES.map((name) => {
    const spec: VariableSpec = VARIABLES[name];
    const set = config.explicit.has(name);
    return { name, value: set ? shownValue(spec, env[name] ?? '') : spec.defaultText, source: set ? 'set' : 'default', services: spec.services };
  });
}

/** `jobline config` as text: aligned columns, defaults marked. */
export function formatEffectiveConfig(rows: readonly EffectiveVariable[]): string {
  const width = Math.max(...rows.map((r) => r.name.length));
  return rows.map((r) => `${r.name.padEnd(width)}  ${r.source === 'set' ? r.value : `${r.value || '(unset)'}  [default]`}`).join('\n') + '\n';
}

export const CONFIG_TABLE_BEGIN = '<!-- configuration table: generated from libs/config/src/variables.ts (npm run docs:config) -->';
export const CONFIG_TABLE_END = '<!-- end of configuration table -->';

/** The README's configuration table (Markdown), generated from the variable table. */
export function configurationTable(): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const all = ['api', 'orchestrator', 'packager', 'executor', 'dev'];
  const lines = ['| variable | used by | accepts | default | meaning |', '|---|---|---|---|---|'];
  for (const name of VARIABLE_NAMES) {
    const s: VariableSpec = VARIABLES[name];
    const who = all.every((x) => s.services.includes(x as never)) ? 'all' : s.services.join(', ');
    lines.push(`| \`${name}\` | ${who} | ${esc(s.accepts)} | ${esc(s.defaultText) || '—'} | ${esc(s.doc)}${s.mask === 'secret' ? ' (secret: never printed)' : ''} |`);
  }
  return lines.join('\n');
}

/** The README with its configuration table replaced by the current one. */
export function withConfigurationTable(readme: string): string {
  const a = readme.indexOf(CONFIG_TABLE_BEGIN);
  const b = readme.indexOf(CONFIG_TABLE_END);
  if (a < 0 || b < a) throw new Error(`README has no configuration table markers (${CONFIG_TABLE_BEGIN} … ${CONFIG_TABLE_END})`);
  return `${readme.slice(0, a + CONFIG_TABLE_BEGIN.length)}\n${configurationTable()}\n${readme.slice(b)}`;
}
