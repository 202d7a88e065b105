import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { WormState } from './worm';

/** Inclusive byte range, already resolved against the blob's size. */
export interface ByteRange {
  start: number;
  end: number;
}

export interface PromoteResult {
  key: string;
  /** False when a blob with these bytes already existed and the staged copy was discarded. */
  created: boolean;
  /** The blob's WORM protection as read back from the store (an existing blob's too). */
  worm: WormState;
}

/**
 * Where evidence bytes live. Blobs are content-addressed: an upload is written under a staging
 * key, and promoted to the key derived from its SHA-256 only once the hash is known and checked.
 * Resumable uploads (ResumableStore) and custody records (CustodyRecordStore) live in the same
 * storage behind interfaces of their own; this store owns the storage's connection (ping, close).
 */
export interface BlobStore {
  readonly driver: 'fs' | 's3';
  /** Streams body into a new staging object and returns its key once every byte is durable. */
  writeStaging(body: Readable): Promise<string>;
  promote(
    stagingKey: string,
    sha256: string,
    size: number,
    namespace?: BlobNamespace,
  ): Promise<PromoteResult>;
  /** Deletes a staging object, or a finished resumable upload's, once its bytes are promoted. */
  discardStaging(stagingKey: string): Promise<void>;
  /**
   * Repairs a damaged evidence blob: writes the staged bytes (which the caller hashed to `sha256`)
   * over whatever the blob at that content address holds now, consuming the staged copy. Disk: an
   * atomic rename (a reader of the old file keeps reading the old bytes). S3: a new object, which
   * in a versioned bucket is a new version; the damaged version is never deleted (under Object
   * Lock it could not be). `previous` names the damaged version where the store keeps versions.
   */
  repair(
    stagingKey: string,
    sha256: string,
    size: number,
    /** keepStaged: the staged copy stays (a resumable upload's, removed by its owner once archived). */
    opts?: { keepStaged?: boolean },
  ): Promise<{ key: string; previous?: string }>;
  /**
   * Deletes staging objects last written before `before` (leftovers of uploads cut off by a crash),
   * and, of any age, those written by an instance `isGone` says has ended (on S3, with unfinished
   * multipart uploads). Returns how many were removed.
   */
  sweepStaging(before: Date, isGone?: (owner: string) => Promise<boolean>): Promise<number>;
  /** Size of a promoted blob, or undefined when it does not exist. */
  stat(key: string): Promise<number | undefined>;
  /**
   * Streams a promoted blob, or the inclusive range of it. Rejects with BlobUnavailableError when
   * the blob is missing or its size is not `expectedSize`: damaged bytes are never served.
   */
  read(key: string, expectedSize: number, range?: ByteRange): Promise<Readable>;
  /** Deletes a promoted blob (retention, admin deletion); a missing blob is not an error. */
  delete(key: string): Promise<void>;
  /** Every object under a prefix in ascending key order: reconciliation merges it with the rows. */
  list(prefix: 'sha256/' | 'staging/' | 'resumable/'): AsyncIterable<StoredObject>;
  /** Whether objects carry a legal-hold flag of their own (S3 with Object Lock configured). */
  readonly legalHoldSupported: boolean;
  /**
   * Mirrors a legal hold to the object's own legal-hold flag where the store has one (S3 Object
   * Lock), and reads it back: throws WormNotInForceError when the object does not show the flag.
   */
  setLegalHold(key: string, on: boolean): Promise<void>;
  /**
   * Reads a promoted evidence blob's WORM protection back and applies it where it is missing, as
   * promote() does: for blobs stored before it was verified (the integrity scrub's back-fill).
   * With `apply: false` it only reads the retention back, judged against now (`expired` once its
   * retain-until has passed): for items whose recorded retention lapsed.
   */
  verifyWorm(key: string, opts?: { apply?: boolean }): Promise<WormState>;
  /** Throws when the store cannot be reached. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface StoredObject {
  key: string;
  size: number;
  lastModified: Date;
}

export class BlobUnavailableError extends Error {
  constructor(
    key: string,
    readonly problem: 'missing' | 'size_mismatch',
    detail: string = problem,
  ) {
    super(`blob ${key} is ${detail}`);
    this.name = 'BlobUnavailableError';
  }
}

/** The store accepted a WORM request (a legal hold) but the object does not show it. */
export class WormNotInForceError extends Error {
  constructor(key: string, detail: string) {
    super(`WORM is not in force on ${key}: ${detail}`);
    this.name = 'WormNotInForceError';
  }
}

/**
 * Evidence blobs live under `sha256/`; derivatives (thumbnails, previews) under `derived/sha256/`,
 * so they never mix with the originals that reconciliation and retention account for.
 */
export type BlobNamespace = 'evidence' | 'derived';

export function blobKeyFor(sha256: string, namespace: BlobNamespace = 'evidence'): string {
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw new Error(`not a sha256 hex digest: ${sha256}`);
  const key = `sha256/${sha256.slice(0, 2)}/${sha256.slice(2, 4)}/${sha256}`;
  return namespace === 'derived' ? `derived/${key}` : key;
}

/** A promoted blob's key (evidence or derived): its content address and nothing else. */
export function isBlobKey(key: string): boolean {
  const m = /^(?:derived\/)?sha256\/([0-9a-f]{2})\/([0-9a-f]{2})\/([0-9a-f]{64})$/.exec(key);
  return m !== null && m[3]!.startsWith(m[1]! + m[2]!);
}

export const STAGING_PREFIX = 'staging/';
export const RESUMABLE_PREFIX = 'resumable/';

/** Keys that promote() moves to a content address: a staging object or a finished resumable upload. */
export function isPromotableKey(key: string): boolean {
  return /^(staging\/([0-9a-f-]{36}\.)?|resumable\/)[0-9a-f-]{36}$/.test(key);
}

/**
 * A new staging key. With the writing instance's id (`staging/<instance>.<uuid>`), the staging
 * sweep removes it as soon as that instance has ended; without one (tools, keys written before
 * instances were registered), only once it is older than STAGING_GRACE_HOURS.
 */
export async function newStagingKey(owner: StagingOwner | undefined): Promise<string> {
  if (typeof owner === 'function') owner = await owner();
  return `${STAGING_PREFIX}${owner ? `${owner}.` : ''}${randomUUID()}`;
}

/**
 * The instance writing staging: its id, or a function giving its current id (it may change, and
 * asking may first register the instance again after a lost session).
 */
export type StagingOwner = string | (() => string | Promise<string>);

/** The id of the instance that wrote a staging key, when the key names one. */
export function stagingOwner(key: string): string | undefined {
  return /^staging\/([0-9a-f-]{36})\.[0-9a-f-]{36}$/.exec(key)?.[1];
}
