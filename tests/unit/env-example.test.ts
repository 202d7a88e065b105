import { readFileSync } from 'node:fs';
import path from 'node:path';
import { loadConfig, SETTING_NAMES } from '../../src/base/config';
import { readEnvExample, ROOT, uncommented } from '../support/env-example';

const example = readEnvExample();

/** `NAME=value` lines of an env file, as docker-compose and the service read them. */
function parseEnv(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const m of text.matchAll(/^([A-Z][A-Z0-9_]*)=(.*)$/gm)) env[m[1]!] = m[2]!;
  return env;
}

describe('.env.example', () => {
  it('documents every setting src/base/config.ts reads, and only those', () => {
    const documented = [...example.settings.keys()].sort();
    expect(documented).toEqual([...SETTING_NAMES].sort());
  });

  it('keeps the variables only docker-compose.yml reads apart, and docker-compose.yml reads each', () => {
    const compose = readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8');
    expect(example.composeOnly.size).toBeGreaterThan(0);
    for (const name of example.composeOnly.keys()) {
      expect(SETTING_NAMES).not.toContain(name);
      expect(compose).toContain(`\${${name}:-${example.composeOnly.get(name)}}`);
    }
  });

  it('shows the real defaults: uncommenting every line changes nothing', () => {
    const env = parseEnv(uncommented(example));
    expect(Object.keys(env).sort()).toEqual(
      [...example.settings.keys(), ...example.composeOnly.keys()].sort(),
    );
    // Examples, not defaults: unset means "the one on PATH".
    const { FFMPEG_PATH, FFPROBE_PATH, ...defaults } = env;
    expect(FFMPEG_PATH).toMatch(/ffmpeg$/);
    expect(FFPROBE_PATH).toMatch(/ffprobe$/);
    // Some settings only show with others: S3's with the S3 driver, Twilio's with its token.
    for (const base of [
      {},
      { STORAGE_DRIVER: 's3', S3_BUCKET: 'evidence' },
      { TWILIO_AUTH_TOKEN: 'a'.repeat(32), TWILIO_INGEST_KEY_ID: 'key-id' },
    ]) {
      expect(loadConfig({ ...defaults, ...base })).toEqual(loadConfig(base));
    }
  });
});
