import { readFileSync } from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..');

/** A page of the documentation: `README.md` or `docs/<page>.md`, relative to the repository. */
export function readDoc(page: string): string {
  return readFileSync(path.join(ROOT, page), 'utf8');
}

/** Whether the page shows this file verbatim as one code block (so the test that runs it runs the page). */
export function docShows(page: string, file: string, lang = 'js'): boolean {
  return readDoc(page).includes('```' + lang + '\n' + readFileSync(file, 'utf8') + '```\n');
}
