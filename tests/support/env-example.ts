import { readFileSync } from 'node:fs';
import path from 'node:path';

export const ROOT = path.resolve(__dirname, '../..');

export interface EnvExample {
  text: string;
  /** Variables the service reads, with the value shown (the default; '' when unset). */
  settings: Map<string, string>;
  /** Variables only docker-compose.yml reads (its own section at the end). */
  composeOnly: Map<string, string>;
}

/**
 * `.env.example` as a reader sees it: a variable is a line `NAME=value` or `# NAME=value` (the
 * value without spaces), which `cp .env.example .env` plus uncommenting turns into a setting.
 */
export function readEnvExample(file = path.join(ROOT, '.env.example')): EnvExample {
  const text = readFileSync(file, 'utf8');
  const settings = new Map<string, string>();
  const composeOnly = new Map<string, string>();
  let target = settings;
  for (const line of text.split('\n')) {
    if (/^# -+ docker-compose\.yml only/.test(line)) target = composeOnly;
    const m = /^(?:# )?([A-Z][A-Z0-9_]*)=(\S*)$/.exec(line);
    if (!m) continue;
    if (settings.has(m[1]!) || composeOnly.has(m[1]!)) {
      throw new Error(`.env.example lists ${m[1]} twice`);
    }
    target.set(m[1]!, m[2]!);
  }
  return { text, settings, composeOnly };
}

/** .env.example with every commented-out variable line uncommented (each default set explicitly). */
export function uncommented(example: EnvExample): string {
  return example.text.replace(/^# ([A-Z][A-Z0-9_]*=\S*)$/gm, '$1');
}
