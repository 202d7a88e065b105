import type { Db } from '../../src/db/database';
import { EvidenceRepository } from '../../src/evidence/evidence.repository';
import { IdempotencyRepository } from '../../src/evidence/idempotency.repository';
import { AuditRepository } from '../../src/base/audit.repository';
import { AuditLog } from '../../src/base/audit.service';
import { IngestService } from '../../src/ingest/ingest.service';
import type { StagedUpload } from '../../src/ingest/upload-storage-engine';
import { createLogger } from '../../src/base/logger';
import type { BlobStore, PromoteResult } from '../../src/storage/blob-store';
import { WORM_NOT_CONFIGURED, type WormState } from '../../src/storage/worm';
import type { Principal } from '../../src/base/actor';

/**
 * Records what the service asks of storage (the part of BlobStore it uses); the refusal paths below
 * never reach the database.
 */
class RecordingStore implements Pick<BlobStore, 'promote' | 'discardStaging' | 'verifyWorm'> {
  calls: string[] = [];
  failPromote = false;
  async promote(stagingKey: string): Promise<PromoteResult> {
    this.calls.push(`promote ${stagingKey}`);
    if (this.failPromote) throw new Error('bucket unreachable');
    return { key: 'sha256/aa/bb/x', created: true, worm: WORM_NOT_CONFIGURED };
  }
  async discardStaging(stagingKey: string): Promise<void> {
    this.calls.push(`discard ${stagingKey}`);
  }
  async verifyWorm(): Promise<WormState> {
    return WORM_NOT_CONFIGURED;
  }
}

/** No earlier item has these bytes: the check for deleted evidence passes without a database. */
class NoPriorItems extends EvidenceRepository {
  override async findBySha256(): Promise<undefined> {
    return undefined;
  }
}

const principal: Principal = { keyId: 'k1', role: 'ingest', name: 'PK-03' };
const staged = (over: Partial<StagedUpload> = {}): StagedUpload => ({
  stagingKey: 'staging/1',
  sha256: 'a'.repeat(64),
  size: 10,
  contentType: 'video/mp4',
  ...over,
});

describe('IngestService refusals', () => {
  let store: RecordingStore;
  let service: IngestService;
  beforeEach(() => {
    store = new RecordingStore();
    const noDb = {} as Db; // any database access on these paths would throw
    service = new IngestService({
      db: noDb,
      store,
      evidence: new NoPriorItems(),
      idempotency: new IdempotencyRepository(),
      audit: new AuditLog({
        db: noDb,
        repo: new AuditRepository(),
        logger: createLogger('silent'),
      }),
      logger: createLogger('silent'),
    });
  });

  it.each([
    ['an empty file', staged({ size: 0 }), { kind: 'packing_video' }, 'empty_file'],
    [
      'a declared hash that differs',
      staged(),
      { kind: 'packing_video', sha256: 'b'.repeat(64) },
      'checksum_mismatch',
    ],
    [
      'audio sent as a packing video',
      staged({ contentType: 'audio/wav' }),
      { kind: 'packing_video' },
      'unsupported_media_type',
    ],
    ['an unknown field', staged(), { kind: 'photo', colour: 'red' }, 'unknown_field'],
    ['a missing kind', staged(), {}, 'validation_failed'],
  ])(
    'refuses %s, discards the staged bytes and never promotes them',
    async (_l, upload, fields, code) => {
      await expect(service.ingest({ principal, staged: upload, fields })).rejects.toMatchObject({
        code,
      });
      expect(store.calls).toEqual(['discard staging/1']);
    },
  );

  it('accepts a declared hash in capitals', async () => {
    store.failPromote = true;
    await expect(
      service.ingest({
        principal,
        staged: staged(),
        fields: { kind: 'packing_video', sha256: 'A'.repeat(64) },
      }),
    ).rejects.toThrow('bucket unreachable');
    expect(store.calls).toEqual(['promote staging/1', 'discard staging/1']);
  });

  it('refuses a request without a file part', async () => {
    await expect(
      service.ingest({ principal, staged: undefined, fields: { kind: 'photo' } }),
    ).rejects.toMatchObject({
      code: 'missing_file',
    });
  });
});
