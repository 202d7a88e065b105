import {
  GetObjectLegalHoldCommand,
  GetObjectRetentionCommand,
  HeadObjectCommand,
  PutObjectLegalHoldCommand,
  PutObjectRetentionCommand,
} from '@aws-sdk/client-s3';
import { WormNotInForceError } from './blob-store';
import { isClientError, isUnsupported, type LockParams, type S3Bucket } from './s3-client';
import {
  WORM_NOT_CONFIGURED,
  type WormLedger,
  type WormObject,
  type WormState,
  type WormStatus,
} from './worm';

/**
 * How far short of now plus the configured days a retention read back may end and still count as
 * the configured one: the copy (or a clock between us and the store) may take a while.
 */
const RETENTION_SLACK_MS = 15 * 60_000;

/**
 * S3 Object Lock as the stores use it: the retention asked for on a new object, and what the
 * store shows afterwards, read back and never assumed (evidence blobs, custody records, legal holds).
 */
export class S3ObjectLock {
  constructor(
    private readonly bucket: S3Bucket,
    /** Told every WORM read-back (metrics, /readyz). */
    private readonly worm?: WormLedger,
  ) {}

  /** Whether objects carry a legal-hold flag of their own (Object Lock configured). */
  get configured(): boolean {
    return this.bucket.cfg.objectLock !== undefined;
  }

  /**
   * Object Lock retention for a new evidence object or record; none without WORM configured, and
   * none for derivatives, which are rebuilt from the originals and must go when their original does.
   */
  lockParams(key?: string): LockParams {
    const lock = this.bucket.cfg.objectLock;
    if (!lock || key?.startsWith('derived/')) return {};
    return {
      ObjectLockMode: lock.mode,
      ObjectLockRetainUntilDate: new Date(Date.now() + lock.retentionDays * 86_400_000),
    };
  }

  /**
   * Makes sure the configured Object Lock retention is on an evidence object or custody record, as
   * read back from the store. Some stores ignore the lock headers of a CopyObject or multipart
   * upload (Ceph radosgw 16.2 does, while honouring them on PutObject), and a bucket default
   * retention may have given the object a shorter one: a retention counts as in force only when it
   * reaches the configured one (now plus the days, less RETENTION_SLACK_MS), otherwise it is
   * extended with PutObjectRetention (extending is allowed in both modes; a longer retention is
   * kept as it is) and read back again. What the store still does not show is `not_in_force`.
   */
  async ensureRetention(key: string, object: WormObject, observe = true): Promise<WormState> {
    const lock = this.bucket.cfg.objectLock;
    if (!lock || key.startsWith('derived/')) return WORM_NOT_CONFIGURED;
    let found = await this.readRetention(key);
    if (!this.reachesConfigured(found)) {
      const wanted = Date.now() + lock.retentionDays * 86_400_000;
      try {
        await this.bucket.client.send(
          new PutObjectRetentionCommand({
            Bucket: this.bucket.name,
            Key: this.bucket.objectKey(key),
            Retention: {
              // COMPLIANCE cannot be turned into GOVERNANCE: an object under it stays so.
              Mode: found.mode === 'COMPLIANCE' ? 'COMPLIANCE' : lock.mode,
              RetainUntilDate: new Date(Math.max(wanted, found.until?.getTime() ?? 0)),
            },
          }),
        );
      } catch (err) {
        // A store (or bucket) without Object Lock refuses it: reported below as not in force.
        if (!isClientError(err) && !isUnsupported(err)) throw err;
      }
      found = await this.readRetention(key);
    }
    const state: WormState = {
      status: this.reachesConfigured(found) ? 'in_force' : 'not_in_force',
      mode: found.mode,
      retainUntil: found.until ?? null,
    };
    if (observe) this.worm?.observe(object, key, state.status);
    return state;
  }

  /** Retention of the configured mode (or COMPLIANCE) until at least now plus the days (less slack). */
  private reachesConfigured(r: { mode: WormState['mode']; until?: Date }): boolean {
    const lock = this.bucket.cfg.objectLock!;
    // COMPLIANCE is stronger than GOVERNANCE: either satisfies GOVERNANCE.
    const modeOk = r.mode === lock.mode || r.mode === 'COMPLIANCE';
    const required = Date.now() + lock.retentionDays * 86_400_000 - RETENTION_SLACK_MS;
    return modeOk && r.until !== undefined && r.until.getTime() >= required;
  }

  /** The object's retention as the store reports it (mode null: none, or not one S3 defines). */
  private async readRetention(key: string): Promise<{ mode: WormState['mode']; until?: Date }> {
    const Key = this.bucket.objectKey(key);
    const head = await this.bucket.client.send(
      new HeadObjectCommand({ Bucket: this.bucket.name, Key }),
    );
    let mode: string | undefined = head.ObjectLockMode;
    let until = head.ObjectLockRetainUntilDate;
    if (!mode) {
      // Not every store reports retention on HEAD: ask for it directly.
      try {
        const { Retention } = await this.bucket.client.send(
          new GetObjectRetentionCommand({ Bucket: this.bucket.name, Key }),
        );
        mode = Retention?.Mode;
        until = Retention?.RetainUntilDate;
      } catch (err) {
        // No retention on the object (ObjectLockConfigurationNotFoundError, 404), or no Object
        // Lock at all: not in force.
        if (!isClientError(err) && !isUnsupported(err)) throw err;
      }
    }
    return {
      mode: mode === 'GOVERNANCE' || mode === 'COMPLIANCE' ? mode : null,
      ...(until ? { until } : {}),
    };
  }

  /**
   * An archived blob's retention judged against now, read only: `in_force` while a retention of
   * the configured mode lasts, `expired` once its retain-until has passed (what the scrub records
   * for an item whose recorded retention lapsed), `not_in_force` with none at all.
   */
  async currentRetention(key: string): Promise<WormState> {
    const lock = this.bucket.cfg.objectLock;
    if (!lock) return WORM_NOT_CONFIGURED;
    const found = await this.readRetention(key);
    const modeOk = found.mode === lock.mode || found.mode === 'COMPLIANCE';
    const status =
      !modeOk || !found.until
        ? 'not_in_force'
        : found.until.getTime() > Date.now()
          ? 'in_force'
          : 'expired';
    return { status, mode: found.mode, retainUntil: found.until ?? null };
  }

  /** /readyz's re-check of a latched problem's object (see WormLedger.refresh). */
  async recheck(problem: { object: WormObject; key: string }): Promise<WormStatus> {
    if (problem.object === 'legal_hold') {
      // Read only: whether a hold is wanted is the database's to say (the scrub mirrors it).
      const { LegalHold } = await this.bucket.client.send(
        new GetObjectLegalHoldCommand({
          Bucket: this.bucket.name,
          Key: this.bucket.objectKey(problem.key),
        }),
      );
      return LegalHold?.Status === 'ON' ? 'in_force' : 'not_in_force';
    }
    // As after a write: the configured retention, applied where the object lacks it.
    return (await this.ensureRetention(problem.key, problem.object, false)).status;
  }

  /**
   * Sets the object's legal-hold flag and reads it back: throws WormNotInForceError when the
   * object does not show it. A no-op without Object Lock configured.
   */
  async setLegalHold(key: string, on: boolean): Promise<void> {
    if (!this.configured) return;
    const want = on ? 'ON' : 'OFF';
    const Key = this.bucket.objectKey(key);
    await this.bucket.client.send(
      new PutObjectLegalHoldCommand({
        Bucket: this.bucket.name,
        Key,
        LegalHold: { Status: want },
      }),
    );
    // Read back: a store that accepted the request without setting the flag is found out here.
    let got: string | undefined;
    try {
      const { LegalHold } = await this.bucket.client.send(
        new GetObjectLegalHoldCommand({ Bucket: this.bucket.name, Key }),
      );
      got = LegalHold?.Status;
    } catch (err) {
      if (!isClientError(err) && !isUnsupported(err)) throw err;
    }
    const shows = (got ?? 'OFF') === want;
    if (on) this.worm?.observe('legal_hold', key, shows ? 'in_force' : 'not_in_force');
    if (!shows)
      throw new WormNotInForceError(
        key,
        `legal hold ${want} requested, the store shows ${got ?? 'none'}`,
      );
  }
}
