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
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

/** hash(n) = SHA-256(hash(n-1) || canonical(event n)): changing any event breaks every later link. */
export function chainHash(prevHash: string, event: ChainedEvent): string {
  return createHash('sha256').update(prevHash).update(canonicalJson(event)).digest('hex');
}
