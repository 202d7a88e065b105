import { execFileSync } from 'node:child_process';
import { createHash, webcrypto } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import {
  certificatesFromPem,
  verifyTimestampResponse,
} from '../../src/custody/timestamp-authority';

/**
 * A token signed by a certificate that is not a timestamping certificate (no extended key usage,
 * or timeStamping not marked critical, as RFC 3161 §2.3 requires) proves nothing: any key a CA
 * issued for something else could date anything. `openssl ts -reply` refuses to sign with such a
 * certificate, so the tokens here are built with pkijs, signed by certificates openssl issued.
 */
describe('a timestamp token whose signer is not a timestamping certificate', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tsa-eku-'));
  const p = (f: string) => path.join(dir, f);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const data = Buffer.from('{"hash":"checkpoint bytes","seq":7}');

  beforeAll(() => {
    openssl(
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', p('ca.key'), '-out', p('ca.pem'),
      '-subj', '/CN=EKU Test Root', '-days', '2',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign',
    ); // prettier-ignore
    const extensions: Record<string, string> = {
      critical: 'extendedKeyUsage = critical, timeStamping',
      'not-critical': 'extendedKeyUsage = timeStamping',
      none: '',
      'server-auth': 'extendedKeyUsage = critical, serverAuth',
    };
    for (const [name, eku] of Object.entries(extensions)) {
      writeFileSync(
        p(`${name}.cnf`),
        `[x]\nbasicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\n${eku}\n`,
      );
      openssl(
        'req', '-newkey', 'rsa:2048', '-nodes', '-keyout', p(`${name}.key`), '-out', p(`${name}.csr`),
        '-subj', `/CN=Signer ${name}`,
      ); // prettier-ignore
      openssl(
        'x509', '-req', '-in', p(`${name}.csr`), '-CA', p('ca.pem'), '-CAkey', p('ca.key'),
        '-set_serial', String(Object.keys(extensions).indexOf(name) + 10), '-out', p(`${name}.pem`),
        '-days', '1', '-extfile', p(`${name}.cnf`), '-extensions', 'x',
      ); // prettier-ignore
    }
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** A granted TimeStampResp over `data`, its TSTInfo signed with the named certificate's key. */
  async function tokenSignedBy(name: string): Promise<Buffer> {
    const crypto = new pkijs.CryptoEngine({
      name: 'node',
      crypto: webcrypto as unknown as pkijs.CryptoEngineParameters['crypto'],
    });
    const [cert] = certificatesFromPem(readFileSync(p(`${name}.pem`), 'utf8'));
    const keyDer = Buffer.from(
      readFileSync(p(`${name}.key`), 'utf8').replace(/-----[A-Z ]+-----|\s/g, ''),
      'base64',
    );
    const key = await webcrypto.subtle.importKey(
      'pkcs8',
      keyDer,
      { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
      false,
      ['sign'],
    );
    const tst = new pkijs.TSTInfo({
      version: 1,
      policy: '1.2.3.4.1',
      messageImprint: new pkijs.MessageImprint({
        hashAlgorithm: new pkijs.AlgorithmIdentifier({ algorithmId: '2.16.840.1.101.3.4.2.1' }),
        hashedMessage: new asn1js.OctetString({
          valueHex: createHash('sha256').update(data).digest(),
        }),
      }),
      serialNumber: new asn1js.Integer({ value: 1 }),
      genTime: new Date(),
    });
    const signed = new pkijs.SignedData({
      version: 3,
      encapContentInfo: new pkijs.EncapsulatedContentInfo({
        eContentType: pkijs.id_eContentType_TSTInfo,
        eContent: new asn1js.OctetString({ valueHex: tst.toSchema().toBER() }),
      }),
      signerInfos: [
        new pkijs.SignerInfo({
          version: 1,
          sid: new pkijs.IssuerAndSerialNumber({
            issuer: cert!.issuer,
            serialNumber: cert!.serialNumber,
          }),
        }),
      ],
      certificates: [cert!],
    });
    // DER, as a TSA writes it (pkijs's constructor would make the content a constructed string).
    signed.encapContentInfo.eContent = new asn1js.OctetString({ valueHex: tst.toSchema().toBER() });
    await signed.sign(key, 0, 'SHA-256', undefined, crypto);
    const resp = new pkijs.TimeStampResp({
      status: new pkijs.PKIStatusInfo({ status: pkijs.PKIStatus.granted }),
      timeStampToken: new pkijs.ContentInfo({
        contentType: pkijs.ContentInfo.SIGNED_DATA,
        content: signed.toSchema(true),
      }),
    });
    return Buffer.from(resp.toSchema().toBER());
  }

  const roots = () => certificatesFromPem(readFileSync(p('ca.pem'), 'utf8'));

  it('accepts the same token from a certificate with the critical timeStamping usage', async () => {
    const t = await verifyTimestampResponse(roots(), 't', await tokenSignedBy('critical'), data);
    expect(t.signer).toBe('CN=Signer critical');
    // And the check is over these bytes: others are refused.
    await expect(
      verifyTimestampResponse(roots(), 't', await tokenSignedBy('critical'), Buffer.from('x')),
    ).rejects.toThrow(/other bytes/);
  });

  it.each(['none', 'not-critical', 'server-auth'])(
    'refuses a token signed by a certificate with extended key usage: %s',
    async (name) => {
      await expect(
        verifyTimestampResponse(roots(), 't', await tokenSignedBy(name), data),
      ).rejects.toThrow(/lacks the critical timeStamping extended key usage/);
    },
  );
});
