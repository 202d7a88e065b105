import { Readable } from 'node:stream';
import type { Principal } from '../../src/access/roles';
import type { Db } from '../../src/db/database';
import { EvidenceRepository } from '../../src/evidence/evidence.repository';
import { IdempotencyRepository } from '../../src/evidence/idempotency.repository';
import { AuditRepository } from '../../src/custody/audit.repository';
import { AuditLog } from '../../src/custody/audit.service';
import { IngestService } from '../../src/ingest/ingest.service';
import type { StagedUpload } from '../../src/ingest/upload-storage-engine';
import { createLogger } from '../../src/logger';
import type { BlobStore, PromoteResult } from '../../src/storage/blob-store';
import { WORM_NOT_CONFIGURED, type WormState } from '../../src/storage/worm';

/** Records what the service asks of storage; the refusal paths below never reach the database. */
class RecordingStore implements BlobStore {
  readonly driver = 'fs' as const;
  calls: string[] = [];
  failPromote = false;
  async writeStaging(_body: Readable): Promise<string> {
    return 'staging/x';
  }
  async promote(stagingKey: string): Promise<PromoteResult> {
    this.calls.push(`promote ${stagingKey}`);
    if (this.failPromote) throw new Error('bucket unreachable');
    return { key: 'sha256/aa/bb/x', created: true, worm: WORM_NOT_CONFIGURED };
  }
  async discardStaging(stagingKey: string): Promise<void> {
    this.calls.push(`discard ${stagingKey}`);
  }
  async sweepStaging(): Promise<number> {
    return 0;
  }
  // Repairs of damaged blobs are tested through the API (tests/api/damaged-evidence.test.ts).
  repair(): Promise<never> {
    throw new Error('not used');
  }
  // Resumable uploads are not part of these refusals (tests/api/resumable-upload.test.ts).
  createResumable(): Promise<never> {
    throw new Error('not used');
  }
  appendResumable(): Promise<never> {
    throw new Error('not used');
  }
  completeResumable(): Promise<never> {
    throw new Error('not used');
  }
  discardResumable(): Promise<never> {
    throw new Error('not used');
  }
  sweepResumable(): Promise<never> {
    throw new Error('not used');
  }
  async stat(): Promise<number | undefined> {
    return undefined;
  }
  async read(): Promise<Readable> {
    return Readable.from([]);
  }
  async delete(): Promise<void> {}
  async *list() {}
  async putRecord(): Promise<WormState> {
    return WORM_NOT_CONFIGURED;
  }
  async verifyWorm(): Promise<WormState> {
    return WORM_NOT_CONFIGURED;
  }
  async getRecord(): Promise<Buffer | undefined> {
    return undefined;
  }
  async listRecords(): Promise<string[]> {
    return [];
  }
  readonly legalHoldSupported = false;
  async setLegalHold(): Promise<void> {}
  async ping(): Promise<void> {}
  async close(): Promise<void> {}
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
