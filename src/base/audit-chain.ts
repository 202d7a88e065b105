import { createHash } from 'node:crypto';

export const GENESIS_HASH = '0'.repeat(64);

/** An audit event as it is hashed: every stored column but the hashes themselves. */
export interface ChainedEvent {
  seq: number;
  occurredAt: string;
  action: string;
  outcome: 'success' | 'denied' | 'failed';
  actor: { keyId: string | null; role: string | null; name: string | null };
  itemIds: string[];
  complaintId: string | null;
  requestId: string | null;
  clientIp: string | null;
  details: Record<string, unknown>;
}

/**
 * JSON with object keys sorted at every level: the same event always gives the same bytes,
 * whatever order PostgreSQL's jsonb or a JavaScript object happens to hold its keys in.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new Error('non-finite number');
    return JSON.stringify(value ?? null);
  }
  // Loops rather than map/filter/join: verify-audit hashes every event of the trail (tens of
  // millions), and this is most of its time. The bytes are the same (tests/unit/canonical-json).
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out += ',';
      if (i in value) out += canonicalJson(value[i]); // a hole joins as nothing, as before
    }
    return `${out}]`;
  }
  const object = value as Record<string, unknown>;
  // The default sort orders by UTF-16 code units, as `<` does.
  const keys = Object.keys(object).sort();
  let out = '{';
  for (const key of keys) {
    const v = object[key];
    if (v === undefined) continue;
    if (out.length > 1) out += ',';
    out += `${JSON.stringify(key)}:${canonicalJson(v)}`;
  }
  return `${out}}`;
}

/** hash(n) = SHA-256(hash(n-1) || canonical(event n)): changing any event breaks every later link. */
export function chainHash(prevHash: string, event: ChainedEvent): string {
  return createHash('sha256').update(prevHash).update(canonicalJson(event)).digest('hex');
}
