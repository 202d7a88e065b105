import { readFileSync } from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..');

/** Whether README.md shows this file verbatim as one code block (so the test that runs it runs the README). */
export function readmeShows(file: string, lang = 'js'): boolean {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  return readme.includes('```' + lang + '\n' + readFileSync(file, 'utf8') + '```\n');
}
