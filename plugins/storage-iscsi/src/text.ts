import type { MotusError } from '@motus/sdk';
import { iscsiError } from './errors.js';

/** RFC 7143 6.1: key names are up to 63 bytes of letters, digits, dot, dash, plus, at and underscore. */
const KEY = /^[A-Za-z0-9.\-+@_]{1,63}$/;
/** Values may be long (CHAP challenges, SendTargets lists) but not unbounded. */
export const MAX_TEXT_VALUE = 8192;

export type TextPairs = Array<[string, string]>;

export function encodeText(pairs: TextPairs | Record<string, string>): Buffer {
  const list = Array.isArray(pairs) ? pairs : Object.entries(pairs);
  return Buffer.from(list.map(([k, v]) => `${k}=${v}\0`).join(''), 'utf8');
}

/** Decodes a complete key=value text (all continuation PDUs joined). */
export function decodeText(buf: Buffer): { ok: true; pairs: TextPairs } | { ok: false; error: MotusError } {
  const pairs: TextPairs = [];
  const parts = buf.toString('utf8').split('\0');
  // Every pair ends in NUL, so the last part is empty; trailing padding adds more.
  while (parts.length > 0 && parts[parts.length - 1] === '') parts.pop();
  for (const part of parts) {
    const eq = part.indexOf('=');
    if (eq <= 0) return { ok: false, error: iscsiError('MOTUS_E_ISCSI_PROTOCOL', `text segment holds "${part.slice(0, 64)}", not key=value`) };
    const key = part.slice(0, eq);
    const value = part.slice(eq + 1);
    if (!KEY.test(key)) return { ok: false, error: iscsiError('MOTUS_E_ISCSI_PROTOCOL', `invalid text key "${key.slice(0, 64)}"`) };
    if (value.length > MAX_TEXT_VALUE) return { ok: false, error: iscsiError('MOTUS_E_ISCSI_PROTOCOL', `value of ${key} longer than ${MAX_TEXT_VALUE} bytes`) };
    pairs.push([key, value]);
  }
  return { ok: true, pairs };
}

/** Last value of each key; SendTargets repeats keys, so it uses the pair list instead. */
export function textMap(pairs: TextPairs): Map<string, string> {
  return new Map(pairs);
}
