import type { IncomingHttpHeaders } from 'node:http';
import { AppError } from '../base/errors';

/**
 * Call metadata a phone system may send as headers instead of query parameters (some PBX scripts
 * can set headers more easily than build a query string). Lists are comma-separated.
 */
const HEADER_FIELDS: Record<string, string> = {
  'x-call-source': 'source',
  'x-call-from': 'fromNumber',
  'x-call-to': 'toNumber',
  'x-call-agent': 'agentId',
  'x-call-direction': 'direction',
  'x-captured-at': 'capturedAt',
  'x-order-id': 'orderId',
  'x-complaint-id': 'complaintId',
};
const LISTS = new Set(['orderId', 'complaintId']);
/** Set by the URL and the route; never by the caller. */
const FIXED = new Set(['kind', 'callId']);

/** RFC 9530 `sha-256=:<base64>:` from Repr-Digest or Content-Digest, as hex. */
function digestHeader(headers: IncomingHttpHeaders): string | undefined {
  for (const name of ['repr-digest', 'content-digest']) {
    const value = headers[name];
    if (typeof value !== 'string') continue;
    const m = /(?:^|,)\s*sha-256=:([A-Za-z0-9+/]{43}=):/i.exec(value);
    if (!m) {
      throw new AppError(
        'validation_failed',
        `${name} must carry a sha-256 digest (sha-256=:<base64>:).`,
        { field: name },
      );
    }
    return Buffer.from(m[1]!, 'base64').toString('hex');
  }
  return undefined;
}

const same = (a: unknown, b: unknown) =>
  JSON.stringify([a].flat().map(String).sort()) === JSON.stringify([b].flat().map(String).sort());

/**
 * The upload fields of a pushed recording: the call id from the path, the rest from the query
 * and the headers. A field given both ways must agree; a typo in a name is refused downstream.
 */
export function callPushFields(
  callId: string,
  query: Record<string, unknown>,
  headers: IncomingHttpHeaders,
): Record<string, unknown> {
  for (const name of Object.keys(query)) {
    if (FIXED.has(name)) {
      throw new AppError(
        'unknown_field',
        `"${name}" is set by the URL of this endpoint, not by a query parameter.`,
        { field: name },
      );
    }
  }
  const fields: Record<string, unknown> = { ...query };
  const fromHeaders: Record<string, unknown> = {};
  for (const [header, field] of Object.entries(HEADER_FIELDS)) {
    const raw = headers[header];
    if (raw === undefined) continue;
    const text = Array.isArray(raw) ? raw.join(',') : raw;
    fromHeaders[field] = LISTS.has(field)
      ? text
          .split(',')
          .map((v) => v.trim())
          .filter(Boolean)
      : text;
  }
  const digest = digestHeader(headers);
  if (digest) fromHeaders.sha256 = digest;
  for (const [field, value] of Object.entries(fromHeaders)) {
    const given = fields[field];
    const norm = (v: unknown) => (field === 'sha256' ? String(v).toLowerCase() : v);
    if (given !== undefined && !same(norm(given), norm(value))) {
      throw new AppError(
        'validation_failed',
        `Field "${field}" is given differently in the query and in a header.`,
        { field },
      );
    }
    fields[field] = value;
  }
  return { ...fields, kind: 'call_recording', callId };
}
