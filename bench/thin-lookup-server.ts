/**
 * The lookup benchmark's baseline: the thinnest Node service doing the very same work as
 * GET /v1/orders/{id}/evidence, with nothing else. `node:http`, a `pg` pool of 10, the project's
 * own compiled query (compiled once; only its parameter changes), the same view mapping and the
 * same JSON out. No auth, no audit, no logging, no framework: what the service adds on top of
 * this is what the benchmark measures.
 *
 *   node dist/bench/thin-lookup-server.js   (DATABASE_URL, PORT; prints "ready" on stdout)
 */
import http from 'node:http';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { PG_TYPES, type Database } from '../src/db/database';
import { EvidenceRepository, LIST_BY_ORDER_LIMIT } from '../src/evidence/evidence.repository';
import { toOrderItemView } from '../src/evidence/evidence.view';

const SENTINEL = '\u0000order\u0000';

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 10, types: PG_TYPES }); // as the service's pools read values
// Only to compile the query: nothing is executed through it.
const compiler = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
const query = new EvidenceRepository().listByOrderQuery(compiler, SENTINEL, LIST_BY_ORDER_LIMIT);
const compiled = query.compile();
type Row = Parameters<typeof toOrderItemView>[0];
const refAt = compiled.parameters.indexOf(SENTINEL);
if (refAt < 0) throw new Error('the compiled query has no order parameter');

const ORDER_PATH = /^\/v1\/orders\/([^/?]+)\/evidence$/;

const server = http.createServer((req, res) => {
  const m = ORDER_PATH.exec(req.url ?? '');
  if (req.method !== 'GET' || !m) {
    res.writeHead(404).end();
    return;
  }
  const orderId = decodeURIComponent(m[1]!);
  const params = [...compiled.parameters];
  params[refAt] = orderId;
  pool.query<Row>(compiled.sql, params).then(
    ({ rows }) => {
      const body = JSON.stringify({
        orderId,
        items: rows.map(toOrderItemView),
      });
      res.writeHead(200, {
        'content-type': 'application/json; charset=utf-8',
        'content-length': Buffer.byteLength(body),
      });
      res.end(body);
    },
    (err: Error) => {
      res.writeHead(500).end(err.message);
    },
  );
});
server.listen(Number(process.env.PORT), '127.0.0.1', () => process.stdout.write('ready\n'));
process.on('SIGTERM', () => {
  server.close();
  void pool.end().then(() => process.exit(0));
});
