import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withConfigurationTable } from './describe-config';

/** Rewrites the README's configuration table from the variable table (`npm run docs:config`). */
const readme = join(__dirname, '../../../../README.md');
writeFileSync(readme, withConfigurationTable(readFileSync(readme, 'utf8')));
process.stdout.write(`wrote the configuration table of ${readme}\n`);
