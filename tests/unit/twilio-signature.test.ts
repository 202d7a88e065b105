import { randomBytes } from 'node:crypto';
import twilio from 'twilio';
import {
  signatureAlgorithm,
  twilioSignature,
  validTwilioSignature,
  type TwilioParams,
} from '../../src/integrations/twilio/twilio-signature';

/**
 * Our validator against the official helper library's, case by case: the library signs, and for
 * every signature and every URL the service might see, ours must say what `validateRequest` says.
 */
const TOKEN = 'unit-auth-token-0123456789abcdef';
const OTHER = 'unit-other-token-0123456789abcdef';

const urls = [
  'https://archive.example.com/v1/integrations/twilio/recording',
  'https://archive.example.com:443/v1/integrations/twilio/recording',
  'https://archive.example.com:8443/v1/integrations/twilio/recording',
  'http://archive.example.com/v1/integrations/twilio/recording',
  'http://archive.example.com:80/v1/integrations/twilio/recording',
  'HTTPS://Archive.Example.com/v1/integrations/twilio/recording',
  'https://user:pw@archive.example.com/v1/integrations/twilio/recording',
  'https://[2001:db8::1]/v1/integrations/twilio/recording',
  'https://[2001:db8::1]:443/v1/integrations/twilio/recording',
  "https://archive.example.com/v1/integrations/twilio/recording?name=O'Brien&x=1",
  'https://archive.example.com/v1/integrations/twilio/recording?name=O%27Brien&x=1',
  'https://archive.example.com/v1/integrations/twilio/recording?a=%20b&a=c',
  'https://archive.example.com/v1/integrations/twilio/recording?',
  'https://archive.example.com/v1/integrations/twilio/recording#frag',
  'https://archive.example.com/v1/integrations/twilio/récording',
  'archive.example.com/v1/integrations/twilio/recording',
];

const paramSets: TwilioParams[] = [
  {},
  { RecordingSid: `RE${'a'.repeat(32)}`, RecordingStatus: 'completed', RecordingUrl: '' },
  { Tag: ['b', 'a', 'b', 'a'], Other: 'x' },
  { Tag: ['z'], tag: 'Z', TAG: ['', ''] },
  { Caller: '+44 20 7946 0958', Name: 'Zoë 👩‍💼', Empty: '' },
  { 'a b': 'c=d&e', ü: ['ß', 'ss', 'ß'], '10': '1', '9': '2' },
];

const algorithms = [undefined, 'HMAC_SHA1', 'HMAC_SHA256', 'hmac_sha256', '', 'HMAC_SHA512'];

function librarySignature(secret: string, url: string, params: TwilioParams, algorithm?: string) {
  try {
    return twilio.getExpectedTwilioSignature(secret, url, params, algorithm);
  } catch {
    return undefined; // an algorithm the library does not support
  }
}

function libraryValid(sig: string, url: string, params: TwilioParams, algorithm?: string) {
  try {
    const warn = console.warn;
    console.warn = () => undefined; // the library warns about unknown algorithms
    try {
      return twilio.validateRequest(TOKEN, sig, url, params, algorithm);
    } finally {
      console.warn = warn;
    }
  } catch {
    return false; // the library throws on a URL that does not parse; we refuse it
  }
}

describe('Twilio signatures, against the official library', () => {
  it('computes the signature the library computes', () => {
    for (const url of urls) {
      for (const params of paramSets) {
        for (const algorithm of algorithms) {
          const theirs = librarySignature(TOKEN, url, params, algorithm);
          if (theirs === undefined) {
            expect(() => twilioSignature(TOKEN, url, params, algorithm)).toThrow(/Unsupported/);
          } else {
            expect(twilioSignature(TOKEN, url, params, algorithm)).toBe(theirs);
          }
        }
      }
    }
  });

  it('accepts and refuses exactly what validateRequest accepts and refuses', () => {
    let accepted = 0;
    let refused = 0;
    for (const signedUrl of urls) {
      for (const params of paramSets.slice(1, 5)) {
        for (const algorithm of [undefined, 'HMAC_SHA256', 'HMAC_SHA512']) {
          const signatures = [
            librarySignature(TOKEN, signedUrl, params, algorithm),
            librarySignature(OTHER, signedUrl, params, algorithm),
            librarySignature(TOKEN, signedUrl, { ...params, Extra: '1' }, algorithm),
            librarySignature(TOKEN, signedUrl, params, 'HMAC_SHA1'),
            '',
            randomBytes(20).toString('base64'),
          ].filter((s): s is string => s !== undefined);
          for (const sig of signatures) {
            for (const seenUrl of urls) {
              const theirs = libraryValid(sig, seenUrl, params, algorithm);
              const ours = validTwilioSignature(TOKEN, sig, seenUrl, params, algorithm);
              if (ours !== theirs) {
                throw new Error(
                  `disagree (ours ${ours}, library ${theirs}): signed ${signedUrl}, seen ${seenUrl}, algorithm ${algorithm}, params ${JSON.stringify(params)}`,
                );
              }
              if (ours) accepted++;
              else refused++;
            }
          }
        }
      }
    }
    // Both verdicts were exercised, the accepting one across ports and encodings.
    expect(accepted).toBeGreaterThan(50);
    expect(refused).toBeGreaterThan(500);
  });

  it('refuses a missing signature, as the library does', () => {
    const url = urls[0]!;
    expect(validTwilioSignature(TOKEN, undefined, url, {})).toBe(false);
    expect(twilio.validateRequest(TOKEN, undefined as unknown as string, url, {})).toBe(false);
  });

  it('reads the algorithm from X-Twilio-Webhooks-Signature-Settings as the library does', () => {
    for (const header of [
      undefined,
      '',
      'key=webhooks_sharedkey_x',
      'key=webhooks_sharedkey_x,algorithm=HMAC_SHA256',
      ' algorithm = HMAC_SHA256 , key=k',
      'algorithm=',
      'algorithm=,algorithm=HMAC_SHA256',
      'algorithm=HMAC_SHA1,algorithm=HMAC_SHA256',
      'Algorithm=HMAC_SHA256',
      'algorithm=hmac_sha256',
      'algorithm=HMAC_SHA512',
      'algorithm==x',
      ',,,',
    ]) {
      expect([header, signatureAlgorithm(header)]).toEqual([
        header,
        twilio.getSignatureAlgorithm(header as string),
      ]);
    }
  });
});
