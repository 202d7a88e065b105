import type { Role } from '../db/database';

/** An API key's holder: who a request acts for, once its key is authenticated. */
export interface Principal {
  keyId: string;
  role: Role;
  name: string;
  /** The web app session the request came through (`POST /v1/session`), if any. */
  sessionId?: string;
}

/** Who acted: an API key's holder on a request, or one of the service's own jobs. */
export interface Actor {
  keyId: string | null;
  role: string;
  name: string;
  requestId?: string;
  clientIp?: string;
}

/** An API key's holder on one request: what services receive from routes. */
export type RequestActor = Principal & { requestId?: string; clientIp?: string };

export const systemActor = (name: string): Actor => ({ keyId: null, role: 'system', name });

/** The roles a key can have (the database's `role` enum). */
export const ROLES = ['ingest', 'support', 'admin'] as const;
