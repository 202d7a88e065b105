import { createHash, randomBytes } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import type { Logger } from '../base/logger';

const TIME_STAMPING_EKU = '1.3.6.1.5.5.7.3.8';
const EXT_KEY_USAGE = '2.5.29.37';
const SHA256_OID = '2.16.840.1.101.3.4.2.1';
const MAX_RESPONSE_BYTES = 1024 * 1024;
/** How far a fresh token's genTime may be from the local clock, and before the checkpoint's signedAt. */
export const MAX_CLOCK_SKEW_MS = 5 * 60_000;

export interface StampOptions {
  /**
   * The token's genTime must not be before this (less the skew): when the stamped bytes say they
   * were made (a checkpoint's signedAt, a manifest's createdAt).
   */
  notBefore?: Date;
  /** Aborts the request (at shutdown). */
  signal?: AbortSignal;
}

/** Reads a body in chunks, giving up (and cancelling it) past `limit` bytes, declared or not. */
async function readLimited(res: Response, limit: number): Promise<Buffer> {
  if (Number(res.headers.get('content-length') ?? 0) > limit) {
    await res.body?.cancel().catch(() => undefined);
    throw new Error('answer too large');
  }
  if (!res.body) return Buffer.alloc(0);
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => undefined);
      throw new Error('answer too large');
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}

/** A verified RFC 3161 answer: the TimeStampResp as received (DER, `.tsr`) and what it says. */
export interface Timestamp {
  /** The whole TimeStampResp, DER: `openssl ts -verify -in <this> -data <bytes> -CAfile <roots>`. */
  response: Buffer;
  /** The authority's time (TSTInfo genTime). */
  genTime: Date;
  /** The URL that answered. */
  authority: string;
  /** The token's serial number, hex. */
  serial: string;
  /** The signing certificate's subject, e.g. `CN=Test TSA`. */
  signer: string;
}

/** An answer that was refused, or no answer: the reason names which. */
export class TimestampError extends Error {
  constructor(
    readonly authority: string,
    message: string,
  ) {
    super(`${authority}: ${message}`);
  }
}

/** Parses every certificate of a PEM bundle. */
export function certificatesFromPem(pem: string): pkijs.Certificate[] {
  const blocks = [
    ...pem.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g),
  ];
  return blocks.map((m) =>
    pkijs.Certificate.fromBER(Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64')),
  );
}

const hex = (v: ArrayBuffer | Uint8Array) =>
  Buffer.from(v instanceof Uint8Array ? v : new Uint8Array(v)).toString('hex');
/** An INTEGER's value as hex without leading zero octets (for comparing nonces). */
const intHex = (i: asn1js.Integer) => hex(i.valueBlock.valueHexView).replace(/^(00)+/, '');
const subjectOf = (c: pkijs.Certificate) =>
  c.subject.typesAndValues
    .map(
      (tv) =>
        `${{ '2.5.4.3': 'CN', '2.5.4.10': 'O', '2.5.4.6': 'C' }[tv.type] ?? tv.type}=${tv.value.valueBlock.value}`,
    )
    .join(', ');

export interface TimestampAuthorityOptions {
  urls: string[];
  /** PEM roots the signer must chain to. */
  caPem: string;
  timeoutMs: number;
  logger: Logger;
}

/**
 * An RFC 3161 client: asks each configured authority in turn for a token over some bytes and keeps
 * the first answer that verifies (status granted, our SHA-256 imprint and nonce, a CMS signature
 * by a certificate with the timeStamping extended key usage chaining to the configured roots).
 */
export class TimestampAuthority {
  readonly urls: string[];
  private readonly roots: pkijs.Certificate[];
  readonly timeoutMs: number;
  private readonly logger: Logger;

  constructor(opts: TimestampAuthorityOptions) {
    this.urls = opts.urls;
    this.roots = certificatesFromPem(opts.caPem);
    if (this.roots.length === 0) throw new Error('no CA certificate for the timestamp authorities');
    this.timeoutMs = opts.timeoutMs;
    this.logger = opts.logger;
  }

  /** A verified token over `data` from the first authority that gives one; throws when none did. */
  async stamp(data: Buffer, opts: StampOptions = {}): Promise<Timestamp> {
    const failures: string[] = [];
    for (const url of this.urls) {
      if (opts.signal?.aborted) break;
      try {
        return await this.stampAt(url, data, opts);
      } catch (err) {
        const message = (err as Error).message;
        failures.push(message);
        this.logger.warn(
          { authority: url, reason: message },
          'timestamp authority gave no usable token',
        );
      }
    }
    throw new Error(`no timestamp authority gave a usable token: ${failures.join('; ')}`);
  }

  private async stampAt(url: string, data: Buffer, opts: StampOptions): Promise<Timestamp> {
    const digest = createHash('sha256').update(data).digest();
    const nonceBytes = randomBytes(8);
    nonceBytes[0] = (nonceBytes[0]! & 0x7f) | 0x01; // positive, and no leading zero octet
    const nonce = new asn1js.Integer({ valueHex: nonceBytes });
    const req = new pkijs.TimeStampReq({
      version: 1,
      messageImprint: new pkijs.MessageImprint({
        hashAlgorithm: new pkijs.AlgorithmIdentifier({ algorithmId: SHA256_OID }),
        hashedMessage: new asn1js.OctetString({ valueHex: digest }),
      }),
      nonce,
      certReq: true,
    });
    let body: Buffer;
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/timestamp-query' },
        body: Buffer.from(req.toSchema().toBER()),
        redirect: 'error',
        signal: opts.signal
          ? AbortSignal.any([opts.signal, AbortSignal.timeout(this.timeoutMs)])
          : AbortSignal.timeout(this.timeoutMs),
      });
      if (!res.ok) {
        await res.body?.cancel().catch(() => undefined);
        throw new Error(`answered HTTP ${res.status}`);
      }
      body = await readLimited(res, MAX_RESPONSE_BYTES);
    } catch (err) {
      throw new TimestampError(url, `no answer (${(err as Error).message})`);
    }
    const receivedAt = new Date();
    const verified = await this.verify(url, body, data, {
      nonceHex: intHex(nonce),
      notBefore: opts.notBefore,
      receivedAt,
    });
    return { response: body, authority: url, ...verified };
  }

  /**
   * Verifies a TimeStampResp over `data`: status granted, the SHA-256 imprint of `data`, the nonce
   * when given, a valid CMS signature by a timeStamping certificate chaining to the roots (at
   * genTime), genTime not before `notBefore` less the skew. With `receivedAt` (a fresh answer):
   * genTime within the skew of it and the signer certificate valid at it too.
   */
  verify(
    authority: string,
    response: Buffer,
    data: Buffer,
    expect: { nonceHex?: string; notBefore?: Date; receivedAt?: Date } = {},
  ): Promise<Omit<Timestamp, 'response' | 'authority'>> {
    return verifyTimestampResponse(this.roots, authority, response, data, expect);
  }
}

/**
 * The certificates a TimeStampResp carries (the signer's, and its chain when the TSA sent it), as
 * PEM; empty when it holds none or cannot be read.
 */
export function tokenCertificatesPem(response: Buffer): string {
  try {
    const resp = pkijs.TimeStampResp.fromBER(response);
    if (!resp.timeStampToken) return '';
    const signed = new pkijs.SignedData({ schema: resp.timeStampToken.content });
    return (signed.certificates ?? [])
      .filter((c): c is pkijs.Certificate => c instanceof pkijs.Certificate)
      .map((c) => {
        const b64 = Buffer.from(c.toSchema().toBER()).toString('base64');
        return `-----BEGIN CERTIFICATE-----\n${b64.replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END CERTIFICATE-----\n`;
      })
      .join('');
  } catch {
    return '';
  }
}

/**
 * Verifies a TimeStampResp over `data` against the roots given: what `TimestampAuthority.verify`
 * does, for a reader that holds only the roots (the offline bundle verifier, which passes no
 * `receivedAt` and checks genTime against the bundle's createdAt itself).
 */
export async function verifyTimestampResponse(
  roots: pkijs.Certificate[],
  authority: string,
  response: Buffer,
  data: Buffer,
  expect: { nonceHex?: string; notBefore?: Date; receivedAt?: Date } = {},
): Promise<Omit<Timestamp, 'response' | 'authority'>> {
  const expectedNonceHex = expect.nonceHex;
  const refuse = (why: string) => new TimestampError(authority, `refused: ${why}`);
  let resp: pkijs.TimeStampResp;
  try {
    resp = pkijs.TimeStampResp.fromBER(response);
  } catch {
    throw refuse('not a TimeStampResp');
  }
  const status = resp.status.status;
  if (status !== pkijs.PKIStatus.granted && status !== pkijs.PKIStatus.grantedWithMods) {
    throw refuse(`status ${status}`);
  }
  if (!resp.timeStampToken) throw refuse('no token');
  const signed = new pkijs.SignedData({ schema: resp.timeStampToken.content });
  if (signed.encapContentInfo.eContentType !== pkijs.id_eContentType_TSTInfo) {
    throw refuse('the token does not hold a TSTInfo');
  }
  let tstInfo: pkijs.TSTInfo;
  try {
    // A primitive OCTET STRING, as RFC 3161 tokens are DER; anything else is refused here.
    tstInfo = pkijs.TSTInfo.fromBER(signed.encapContentInfo.eContent!.valueBlock.valueHexView);
  } catch {
    throw refuse('the token does not hold a readable TSTInfo');
  }
  const digest = createHash('sha256').update(data).digest('hex');
  if (
    tstInfo.messageImprint.hashAlgorithm.algorithmId !== SHA256_OID ||
    hex(tstInfo.messageImprint.hashedMessage.valueBlock.valueHexView) !== digest
  ) {
    throw refuse('the token is for other bytes (message imprint differs)');
  }
  if (expectedNonceHex !== undefined) {
    if (!tstInfo.nonce || intHex(tstInfo.nonce) !== expectedNonceHex) {
      throw refuse('the nonce differs from the request');
    }
  }
  const genTime = tstInfo.genTime;
  if (!(genTime instanceof Date) || Number.isNaN(genTime.getTime())) throw refuse('no genTime');
  if (expect.receivedAt) {
    const off = genTime.getTime() - expect.receivedAt.getTime();
    if (Math.abs(off) > MAX_CLOCK_SKEW_MS) {
      throw refuse(
        `genTime ${genTime.toISOString()} is ${Math.round(off / 1000)} s off the local clock`,
      );
    }
  }
  if (expect.notBefore && genTime.getTime() < expect.notBefore.getTime() - MAX_CLOCK_SKEW_MS) {
    throw refuse(
      `genTime ${genTime.toISOString()} is before the stamped bytes were made (${expect.notBefore.toISOString()})`,
    );
  }
  let result: pkijs.SignedDataVerifyResult;
  try {
    result = await signed.verify({
      signer: 0,
      data: new Uint8Array(data).buffer,
      trustedCerts: roots,
      checkChain: true,
      extendedMode: true,
    });
  } catch (err) {
    const e = err as { message?: string };
    throw refuse(`signature or certificate chain does not verify (${e.message ?? String(err)})`);
  }
  if (!result.signatureVerified) throw refuse('the CMS signature does not verify');
  const signer = result.signerCertificate;
  if (!signer) throw refuse('no signer certificate');
  const eku = signer.extensions?.find((x) => x.extnID === EXT_KEY_USAGE);
  const purposes = (eku?.parsedValue as pkijs.ExtKeyUsage | undefined)?.keyPurposes ?? [];
  if (!eku?.critical || !purposes.includes(TIME_STAMPING_EKU)) {
    throw refuse('the signer lacks the critical timeStamping extended key usage');
  }
  if (expect.receivedAt) {
    // The chain was checked at genTime (pkijs); a fresh answer's signer must be valid now too.
    const now = expect.receivedAt.getTime();
    if (now < signer.notBefore.value.getTime() || now > signer.notAfter.value.getTime()) {
      throw refuse('the signer certificate is not valid now');
    }
  }
  return {
    genTime,
    serial: hex(tstInfo.serialNumber.valueBlock.valueHexView),
    signer: subjectOf(signer),
  };
}
