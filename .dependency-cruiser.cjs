/**
 * The layers of src/ and the rule that they hold (`npm run lint:deps`, part of `npm run lint`;
 * tests/unit/layers.test.ts runs it too). docs/architecture.md explains the layers.
 *
 * Lowest first, each importing only from its own layer and those below it:
 *   db/                      the schema's types, the connection, migrations: nothing of the app
 *   base/                    config, logger, metrics, errors, ids, fields, actors, the audit log
 *   contract/                the HTTP contract in zod: request and response schemas, the types
 *                            the services and the web app use, the OpenAPI document made from them
 *   storage/, jobs/          the blob store and the job queue
 *   every other folder       the features (evidence, ingest, custody, complaints, media, ...)
 *   context.ts               the composition root: builds every service
 *   http/, cli/              the interfaces: routers and command-line programs
 *   main.ts, worker.ts,      the entry points (background.ts starts the background work)
 *   background.ts
 * No two folders import each other, directly or round a longer cycle. In web/src, no two folders
 * import each other and nothing imports main.ts, the entry point that imports the pages.
 */
const ROOT_FILE = '^src/[^/]+$';
const INTERFACES = '^src/(http|cli)/';
const ENTRY_POINTS = '^src/(main|worker|background)\\.ts$';

module.exports = {
  forbidden: [
    {
      name: 'no-folder-cycle',
      comment:
        'Two folders of src/ or web/src/ import each other (perhaps round a longer cycle): move what both need down a layer (base/), or make one depend on a narrow type instead.',
      severity: 'error',
      scope: 'folder',
      from: { path: '^(src|web/src)/' },
      to: { circular: true },
    },
    {
      name: 'db-imports-nothing-of-the-app',
      comment: 'db/ is the bottom layer: the schema, the connection and migrations.',
      severity: 'error',
      from: { path: '^src/db/' },
      to: { path: '^src/', pathNot: '^src/db/' },
    },
    {
      name: 'base-imports-only-db',
      comment: 'base/ is what every layer may use; it imports nothing above db/.',
      severity: 'error',
      from: { path: '^src/base/' },
      to: { path: '^src/', pathNot: '^src/(base|db)/' },
    },
    {
      name: 'contract-imports-only-base',
      comment:
        'contract/ declares shapes the features, http/ and the web app all use; it knows none of them.',
      severity: 'error',
      from: { path: '^src/contract/' },
      to: { path: '^src/', pathNot: '^src/(base|db|contract)/' },
    },
    {
      name: 'infrastructure-imports-only-base',
      comment: 'storage/ and jobs/ serve the features and know none of them.',
      severity: 'error',
      from: { path: '^src/(storage|jobs)/' },
      to: { path: '^src/', pathNot: '^src/(base|db|storage|jobs)/' },
    },
    {
      name: 'features-below-http-and-cli',
      comment:
        'A feature (or anything below one) never imports a router or a CLI: what both need belongs in the feature or in base/.',
      severity: 'error',
      from: { path: '^src/[^/]+/', pathNot: INTERFACES },
      to: { path: INTERFACES },
    },
    {
      name: 'only-the-top-imports-the-root',
      comment:
        'context.ts, main.ts, worker.ts and background.ts compose the app: no folder below http/ and cli/ imports them.',
      severity: 'error',
      from: { path: '^src/[^/]+/', pathNot: INTERFACES },
      to: { path: ROOT_FILE },
    },
    {
      name: 'context-below-http-and-cli',
      comment:
        'The composition root builds services; the routers and CLIs take it, not the reverse.',
      severity: 'error',
      from: { path: '^src/context\\.ts$' },
      to: { path: [INTERFACES, ENTRY_POINTS] },
    },
    {
      name: 'no-import-of-an-entry-point',
      comment: 'main.ts, worker.ts and background.ts are imported only by the entry points.',
      severity: 'error',
      from: { path: '^src/', pathNot: ENTRY_POINTS },
      to: { path: ENTRY_POINTS },
    },
    {
      name: 'web-no-import-of-the-entry-point',
      comment:
        'web/src/main.ts imports the pages; what a page needs from it belongs in a module of its own (page.ts).',
      severity: 'error',
      from: { path: '^web/src/' },
      to: { path: '^web/src/main\\.ts$' },
    },
  ],
  options: {
    includeOnly: '^(src|web/src)/',
    // Type-only imports couple layers as much as any other.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    progress: { type: 'none' },
  },
};
