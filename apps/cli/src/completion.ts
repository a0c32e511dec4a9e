import type { Command, Option } from 'commander';

/**
 * `jobline completion bash|zsh`: completion scripts generated from the program's own
 * commands and options, so they cannot drift from what the CLI accepts. They complete
 * command names, sub-commands (certs init|issue), options, option choices (--priority low
 * normal high…), and files or folders for options that take a file or a dir.
 */

interface OptionInfo {
  names: string[];
  description: string;
  takesValue: boolean;
  choices: string[];
  /** 'file' | 'dir' for <file>/<dir> values. */
  path: 'file' | 'dir' | null;
}

interface CommandInfo {
  name: string;
  description: string;
  options: OptionInfo[];
  subcommands: CommandInfo[];
  /** Values of a first argument limited to choices (completion bash|zsh). */
  argChoices: string[];
}

function optionInfo(o: Option): OptionInfo {
  const names = [o.short, o.long].filter((n): n is string => Boolean(n));
  const value = /<([^>]+)>|\[([^\]]+)\]/.exec(o.flags);
  const word = (value?.[1] ?? value?.[2] ?? '').toLowerCase();
  return {
    names,
    description: o.description,
    takesValue: value !== null,
    choices: [...(o.argChoices ?? [])],
    path: word === 'file' ? 'file' : word === 'dir' ? 'dir' : null,
  };
}

const HELP: OptionInfo = { names: ['-h', '--help'], description: 'show help', takesValue: false, choices: [], path: null };

function describe(c: Command): CommandInfo {
  return {
    name: c.name(),
    description: c.description().split('\n')[0],
    options: [...c.options.map(optionInfo), HELP],
    subcommands: c.commands.filter((s) => !(s as Command & { _hidden?: boolean })._hidden).map(describe),
    argChoices: [...(c.registeredArguments[0]?.argChoices ?? [])],
  };
}

const words = (xs: string[]) => xs.join(' ');

function bash(program: CommandInfo): string {
  const top = [...program.subcommands.map((c) => c.name), ...program.options.flatMap((o) => o.names)];
  const withSubcommands = program.subcommands.filter((c) => c.subcommands.length > 0).map((c) => c.name);
  const valued = new Set<string>();
  const optionCases: string[] = [];
  const valueCases: string[] = [];
  const walk = (c: CommandInfo, path: string) => {
    optionCases.push(`    "${path}") opts=${JSON.stringify(words([...c.subcommands.map((s) => s.name), ...c.argChoices, ...c.options.flatMap((o) => o.names)]))} ;;`);
    for (const o of c.options) {
      if (!o.takesValue) continue;
      o.names.forEach((n) => valued.add(n));
      const pattern = o.names.map((n) => `"${path} ${n}"`).join('|');
      if (o.choices.length > 0) valueCases.push(`    ${pattern}) COMPREPLY=($(compgen -W ${JSON.stringify(words(o.choices))} -- "$cur")); return ;;`);
      else if (o.path === 'dir') valueCases.push(`    ${pattern}) COMPREPLY=($(compgen -d -- "$cur")); return ;;`);
      else if (o.path === 'file') valueCases.push(`    ${pattern}) COMPREPLY=($(compgen -f -- "$cur")); return ;;`);
      else valueCases.push(`    ${pattern}) return ;;`);
    }
    for (const s of c.subcommands) walk(s, `${path} ${s.name}`);
  };
  for (const c of program.subcommands) walk(c, c.name);
  return `# bash completion for jobline: eval "$(jobline completion bash)" (e.g. in ~/.bashrc)
_jobline() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}"
  local cmd="" sub="" opts="" i w skip=0
  # The command (and sub-command) before the cursor: words that are neither options nor option values.
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    if ((skip)); then skip=0; continue; fi
    case "$w" in
      --) return ;;
      ${[...valued].join('|')}) skip=1 ;;
      -*) ;;
      *) if [[ -z "$cmd" ]]; then cmd="$w"
         elif [[ -z "$sub" && " ${withSubcommands.join(' ')} " == *" $cmd "* ]]; then sub="$w"
         fi ;;
    esac
  done
  if [[ -z "$cmd" ]]; then
    COMPREPLY=($(compgen -W ${JSON.stringify(words(top))} -- "$cur"))
    return
  fi
  local path="$cmd\${sub:+ $sub}"
  case "$path $prev" in
${valueCases.join('\n')}
  esac
  case "$path" in
${optionCases.join('\n')}
  esac
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -o default -F _jobline jobline
`;
}

/** Text inside a zsh _arguments/_describe spec: brackets, colons and quotes escaped. */
const zq = (s: string) => s.replace(/\\/g, '\\\\').replace(/'/g, "'\\''").replace(/([[\]:])/g, '\\$1');

function zshOptionSpecs(c: CommandInfo): string[] {
  return c.options.map((o) => {
    const names = o.names.length > 1 ? `(${o.names.join(' ')})'{${o.names.join(',')}}'` : o.names[0];
    let value = '';
    if (o.takesValue) value = o.choices.length > 0 ? `:value:(${o.choices.map(zq).join(' ')})` : o.path === 'dir' ? ':dir:_files -/' : o.path === 'file' ? ':file:_files' : ':value: ';
    return `'${names}[${zq(o.description)}]${value}'`;
  });
}

function zshFunction(c: CommandInfo, fn: string, out: string[]): void {
  const body: string[] = [];
  if (c.subcommands.length > 0) {
    body.push(`  local -a subcommands`, `  subcommands=(${c.subcommands.map((s) => `'${s.name.replace(/:/g, '\\:')}:${s.description.replace(/'/g, "'\\''")}'`).join(' ')})`);
    body.push(`  local curcontext="$curcontext" state line`);
    body.push(`  _arguments -C ${zshOptionSpecs(c).join(' ')} '1: :->cmd' '*:: :->args'`);
    body.push(`  case $state in`, `    cmd) _describe -t commands 'command' subcommands ;;`, `    args)`, `      case $line[1] in`);
    for (const s of c.subcommands) body.push(`        ${s.name}) ${fn}_${s.name.replace(/-/g, '_')} ;;`);
    body.push(`      esac ;;`, `  esac`);
    for (const s of c.subcommands) zshFunction(s, `${fn}_${s.name.replace(/-/g, '_')}`, out);
  } else {
    const args = c.argChoices.length > 0 ? `'1:${c.name === 'completion' ? 'shell' : 'value'}:(${c.argChoices.map(zq).join(' ')})'` : `'*: :_files'`;
    body.push(`  _arguments ${zshOptionSpecs(c).join(' ')} ${args}`);
  }
  out.push(`${fn}() {\n${body.join('\n')}\n}\n`);
}

function zsh(program: CommandInfo): string {
  const fns: string[] = [];
  zshFunction(program, '_jobline', fns);
  return `#compdef jobline
# zsh completion for jobline: jobline completion zsh > "\${fpath[1]}/_jobline" (then restart zsh),
# or source <(jobline completion zsh) after compinit.
${fns.reverse().join('\n')}
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
  _jobline "$@"
else
  compdef _jobline jobline
fi
`;
}

export function completionScript(program: Command, shell: 'bash' | 'zsh'): string {
  const info = describe(program);
  return shell === 'bash' ? bash(info) : zsh(info);
}
