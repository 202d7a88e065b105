import type { Role } from '../db/database';

export type Permission =
  | 'evidence:create'
  | 'evidence:receipt' // read the metadata of an item this key uploaded
  | 'evidence:read'
  | 'evidence:search'
  | 'evidence:download'
  | 'evidence:link'
  | 'evidence:verify'
  | 'evidence:audit' // the custody history of one item
  | 'evidence:delete'
  | 'complaint:read'
  | 'complaint:write'
  | 'share:manage' // create, list and revoke share links
  | 'report:read'
  | 'bundle:create' // dispute bundles of a complaint
  | 'bundle:read'
  | 'hold:manage'
  | 'audit:read' // the whole trail
  | 'custody:status'
  | 'integration:read' // provider recordings and what became of them (failed fetches, gaps)
  | 'key:manage'; // list, mint and revoke API keys

const GRANTS: Record<Role, readonly Permission[]> = {
  ingest: ['evidence:create', 'evidence:receipt'],
  support: [
    'evidence:receipt',
    'evidence:read',
    'evidence:search',
    'evidence:download',
    'evidence:link',
    'evidence:verify',
    'evidence:audit',
    'complaint:read',
    'complaint:write',
    'share:manage',
    'report:read',
    'bundle:create',
    'bundle:read',
  ],
  admin: [
    'evidence:create',
    'evidence:receipt',
    'evidence:read',
    'evidence:search',
    'evidence:download',
    'evidence:link',
    'evidence:verify',
    'evidence:audit',
    'evidence:delete',
    'complaint:read',
    'complaint:write',
    'share:manage',
    'report:read',
    'bundle:create',
    'bundle:read',
    'hold:manage',
    'audit:read',
    'custody:status',
    'integration:read',
    'key:manage',
  ],
};

export function can(role: Role, permission: Permission): boolean {
  return GRANTS[role].includes(permission);
}

/** Everything a role may do (what `GET /v1/me` shows, so a client can hide what it cannot use). */
export function permissionsOf(role: Role): readonly Permission[] {
  return GRANTS[role];
}
