import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** CHAP (RFC 1994) with MD5, as iSCSI carries it (RFC 7143 12.1.3). */
export const CHAP_MD5 = '5';

/** CHAP binary values travel as 0x-hex or 0b-base64 (RFC 7143 6.1). */
export function decodeChapValue(value: string): Buffer | undefined {
  if (/^0[xX][0-9a-fA-F]+$/.test(value)) {
    const hex = value.slice(2);
    return Buffer.from(hex.length % 2 === 1 ? `0${hex}` : hex, 'hex');
  }
  if (/^0[bB][A-Za-z0-9+/]+=*$/.test(value)) return Buffer.from(value.slice(2), 'base64');
  return undefined;
}

export function encodeChapValue(bytes: Buffer): string {
  return `0x${bytes.toString('hex')}`;
}

export function chapResponse(id: number, secret: string, challenge: Buffer): Buffer {
  return createHash('md5').update(Buffer.from([id & 0xff])).update(Buffer.from(secret, 'utf8')).update(challenge).digest();
}

export function newChallenge(): { id: number; challenge: Buffer } {
  const bytes = randomBytes(17);
  return { id: bytes[0]!, challenge: bytes.subarray(1) };
}

export function sameResponse(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
