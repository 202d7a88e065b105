import { parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js';

/**
 * E.164 form of a phone number, or undefined when it is not a dialable number (an extension,
 * "anonymous", a withheld caller ID). National numbers need a default region.
 */
export function toE164(raw: string, defaultRegion?: string): string | undefined {
  const parsed = parsePhoneNumberFromString(raw, defaultRegion as CountryCode | undefined);
  return parsed?.isValid() ? parsed.number : undefined;
}
