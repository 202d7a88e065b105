import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';

/** The service's Ed25519 identity: it signs audit checkpoints (and, later, dispute bundles). */
export class SigningKey {
  readonly publicKeyPem: string;
  readonly fingerprint: string;

  private constructor(private readonly privateKey: KeyObject) {
    const publicKey = createPublicKey(privateKey);
    this.publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    this.fingerprint = fingerprintOf(publicKey);
  }

  /** From PEM text (CUSTODY_SIGNING_KEY), refusing anything but an Ed25519 private key. */
  static fromPem(pem: string): SigningKey {
    const key = createPrivateKey(pem.replace(/\\n/g, '\n'));
    if (key.asymmetricKeyType !== 'ed25519') {
      throw new Error(`the signing key is ${key.asymmetricKeyType}, not an Ed25519 private key`);
    }
    return new SigningKey(key);
  }

  /** A key held only in memory: for tools that must never leave a signing key behind. */
  static ephemeral(): SigningKey {
    return new SigningKey(generateKeyPairSync('ed25519').privateKey);
  }

  /** Reads the key file, or undefined when there is none. */
  static async load(file: string): Promise<SigningKey | undefined> {
    try {
      return SigningKey.fromPem(await fs.readFile(file, 'utf8'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** Reads the key file, or creates it (mode 0600) on first start. */
  static async loadOrCreate(file: string): Promise<{ key: SigningKey; created: boolean }> {
    try {
      return { key: SigningKey.fromPem(await fs.readFile(file, 'utf8')), created: false };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    const { privateKey } = generateKeyPairSync('ed25519');
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    try {
      await fs.writeFile(file, pem, { mode: 0o600, flag: 'wx' });
    } catch (err) {
      // Another process created it first: use theirs, so both sign with one key.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      return { key: SigningKey.fromPem(await fs.readFile(file, 'utf8')), created: false };
    }
    return { key: new SigningKey(privateKey), created: true };
  }

  sign(data: Buffer | string): string {
    return sign(null, Buffer.from(data), this.privateKey).toString('base64');
  }
}

/** SHA-256 of the DER public key, hex: what checkpoints name their signer by. */
export function fingerprintOf(publicKey: KeyObject): string {
  return createHash('sha256')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest('hex');
}

export function loadPublicKey(pem: string): KeyObject {
  const key = createPublicKey(pem);
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new Error(`the public key is ${key.asymmetricKeyType}, not Ed25519`);
  }
  return key;
}

export function verifySignature(publicKey: KeyObject, data: string, signature: string): boolean {
  try {
    return verify(null, Buffer.from(data), publicKey, Buffer.from(signature, 'base64'));
  } catch {
    return false;
  }
}
