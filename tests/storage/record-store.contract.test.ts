import { createHash } from 'node:crypto';
import type { CustodyRecordStore } from '../../src/storage/record-store';
import { S3CustodyRecordStore } from '../../src/storage/record-store.s3';
import { cephForTests } from '../support/ceph';
import { startS3Server, type TestS3 } from '../support/s3-server';
import {
  type ContractDriver,
  contractDrivers,
  type ContractStores,
  recordingS3Client,
  compliance30Days,
  type SentRequest,
  startContractStores,
} from '../support/store-contract';

// Ceph's S3 gateway (radosgw 16.2), a real S3 implementation; where it cannot start, its run of
// the contract is skipped outside CI (cephForTests says why) and fails in CI.
const ceph = cephForTests();

/**
 * The same contract, run against every CustodyRecordStore implementation over real storage: disk,
 * s3rver, and Ceph's gateway (a bucket with Object Lock enabled, hence versioned).
 */
describe.each<ContractDriver>(contractDrivers(ceph))(
  'CustodyRecordStore contract (%s)',
  (driver) => {
    let stores: ContractStores;
    let records: CustodyRecordStore;

    beforeAll(async () => {
      stores = await startContractStores(driver, ceph);
      records = stores.records;
    });
    afterAll(async () => {
      await stores.close();
    });

    it('writes custody records once: same bytes again is fine, other bytes are refused', async () => {
      const key = 'custody/checkpoints/00000000000000000007.json';
      await records.putRecord(key, Buffer.from('{"seq":7}'));
      await records.putRecord(key, Buffer.from('{"seq":7}'));
      await expect(records.putRecord(key, Buffer.from('{"seq":8}'))).rejects.toThrow(
        /other content/,
      );
      expect((await records.getRecord(key))!.toString()).toBe('{"seq":7}');
      expect(await records.getRecord('custody/checkpoints/none.json')).toBeUndefined();
      await records.putRecord('custody/checkpoints/00000000000000000003.json', Buffer.from('{}'));
      const listed = await records.listRecords('custody/checkpoints/');
      expect(listed).toEqual([...listed].sort());
      expect(listed).toContain(key);
      expect(listed.every((k) => k.startsWith('custody/checkpoints/'))).toBe(true);
    });

    it('lists the records under its own prefix only, none where none were written', async () => {
      expect(await records.listRecords('custody/none/')).toEqual([]);
      await records.putRecord('custody/other/1.json', Buffer.from('{}'));
      expect(await records.listRecords('custody/other/')).toEqual(['custody/other/1.json']);
      expect(await records.listRecords('custody/none/')).toEqual([]);
    });

    it.each([
      'custody/../x',
      'custody/a/../../b',
      '/etc/passwd',
      'sha256/ab',
      '',
      'custody/',
      'custody/a b',
    ])('refuses the custody record key %j', async (bad) => {
      await expect(records.putRecord(bad, Buffer.from('x'))).rejects.toThrow(
        /invalid custody record key/,
      );
      await expect(records.getRecord(bad)).rejects.toThrow(/invalid custody record key/);
    });
  },
);

/**
 * s3rver has no Object Lock, so what can be checked here is what the store asks of S3: every
 * custody record carries the retention headers, and the Content-MD5 an Object Lock bucket wants.
 */
describe('S3 Object Lock requests (s3rver)', () => {
  let s3: TestS3;
  const sent: SentRequest[] = [];
  let records: S3CustodyRecordStore;
  let close: () => void;

  beforeAll(async () => {
    s3 = await startS3Server();
    const cfg = compliance30Days(s3);
    const client = recordingS3Client(cfg, sent);
    close = () => client.destroy();
    records = new S3CustodyRecordStore(client, cfg);
  });
  afterAll(async () => {
    close();
    await s3.close();
  });

  it('writes custody records with Object Lock retention', async () => {
    sent.length = 0;
    await records.putRecord('custody/checkpoints/1.json', Buffer.from('{"seq":1}'));
    const put = sent.find((r) => r.method === 'PUT');
    expect(put?.headers['x-amz-object-lock-mode']).toBe('COMPLIANCE');
    expect(put?.headers['content-md5']).toBe(
      createHash('md5').update('{"seq":1}').digest('base64'),
    );
  });
});
