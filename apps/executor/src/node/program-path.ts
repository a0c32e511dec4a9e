import { existsSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { LaunchError } from '../core/process-runner.port';
import { isExecutableFile } from './sandbox/host';

/**
 * argv[0] as an absolute path, looked up as the shell would (PATH, or relative to the
 * working directory when it holds a slash), so a missing program is a launch error like
 * a shell's (127 not found, 126 not executable), not a message from deep inside the launcher.
 */
export function resolveProgram(name: string, path: string, cwd: string): string {
  let found: string | null = null;
  if (name.includes('/')) {
    const abs = isAbsolute(name) ? name : resolve(cwd, name);
    if (existsSync(abs)) {
      if (!isExecutableFile(abs)) throw new LaunchError(`cannot run ${JSON.stringify(name)}: permission denied`, 126);
      found = abs;
    }
  } else {
    for (const dir of path.split(':')) {
      if (!dir || !isAbsolute(dir)) continue;
      const candidate = join(dir, name);
      if (isExecutableFile(candidate)) {
        found = candidate;
        break;
      }
    }
  }
  if (!found) throw new LaunchError(`cannot run ${JSON.stringify(name)}: program not found`, 127);
  return found;
}

