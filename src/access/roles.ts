import type { Role } from '../db/database';

export const ROLES = ['ingest', 'support', 'admin'] as const;

export type Permission =
  | 'evidence:create'
  | 'evidence:receipt' // read the metadata of an item this key uploaded
  | 'evidence:read'
  | 'evidence:search'
  | 'evidence:download'
  | 'evidence:link';

const GRANTS: Record<Role, readonly Permission[]> = {
  ingest: ['evidence:create', 'evidence:receipt'],
  support: [
    'evidence:receipt',
    'evidence:read',
    'evidence:search',
    'evidence:download',
    'evidence:link',
  ],
  admin: [
    'evidence:create',
    'evidence:receipt',
    'evidence:read',
    'evidence:search',
    'evidence:download',
    'evidence:link',
  ],
};

export function can(role: Role, permission: Permission): boolean {
  return GRANTS[role].includes(permission);
}

export interface Principal {
  keyId: string;
  role: Role;
  name: string;
}
