import { userInfo } from 'node:os';
import { parseArgs } from 'node:util';
import { ROLES } from '../base/actor';
import type { Role } from '../db/database';
import { withContext } from './cli-context';
import { systemActor } from '../base/actor';

const USAGE = `Usage:
  npm run keys -- create --role <ingest|support|admin> --name <name> [--json]
  npm run keys -- list [--json]
  npm run keys -- revoke <key id>`;

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    role: { type: 'string' },
    name: { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
const [command, ...rest] = positionals;
// Keys are minted at a shell on the server: the audit trail names the OS account that did it.
const actor = systemActor(`keys CLI (${userInfo().username})`);

function fail(message: string): never {
  console.error(`${message}\n\n${USAGE}`);
  process.exit(2);
}

if (values.help || !command) fail('Which command?');

void withContext(async (ctx) => {
  switch (command) {
    case 'create': {
      const role = values.role as Role;
      if (!ROLES.includes(role)) fail(`--role must be one of ${ROLES.join(', ')}.`);
      const name = values.name?.trim();
      if (!name || name.length > 200) fail('--name is required (1-200 characters).');
      const minted = await ctx.apiKeys.create(role, name, actor);
      if (values.json) console.log(JSON.stringify(minted));
      else
        console.log(
          `Created ${minted.role} key "${minted.name}" (id ${minted.id}).\n` +
            `Key (shown once, store it now): ${minted.key}`,
        );
      return;
    }
    case 'list': {
      const keys = await ctx.apiKeys.list(actor);
      if (values.json) console.log(JSON.stringify(keys));
      else
        for (const k of keys)
          console.log(
            `${k.id}  ${k.role.padEnd(7)}  ${k.revoked_at ? 'revoked' : 'active '}  ${k.name}`,
          );
      return;
    }
    case 'revoke': {
      const id = rest[0] ?? fail('revoke needs a key id.');
      const done = await ctx.apiKeys.revoke(id, actor);
      if (!done) {
        console.error(`No active key with id ${id}.`);
        process.exitCode = 1;
      } else console.log(`Revoked key ${id}.`);
      return;
    }
    default:
      fail(`Unknown command "${command}".`);
  }
});
