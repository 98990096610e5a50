import type { MotusError } from '@motus/sdk';
import { iscsiError } from './errors.js';

/**
 * The operational keys and the function RFC 7143 (section 13) gives each: how
 * the result follows from the two sides' values.
 */
type Rule =
  | { kind: 'list'; values: readonly string[] }
  | { kind: 'min' | 'max'; lo: number; hi: number }
  | { kind: 'or' | 'and' }
  | { kind: 'declarative'; lo: number; hi: number };

export const KEY_RULES: Record<string, Rule> = {
  HeaderDigest: { kind: 'list', values: ['None', 'CRC32C'] },
  DataDigest: { kind: 'list', values: ['None', 'CRC32C'] },
  MaxConnections: { kind: 'min', lo: 1, hi: 65535 },
  InitialR2T: { kind: 'or' },
  ImmediateData: { kind: 'and' },
  MaxRecvDataSegmentLength: { kind: 'declarative', lo: 512, hi: 16777215 },
  MaxBurstLength: { kind: 'min', lo: 512, hi: 16777215 },
  FirstBurstLength: { kind: 'min', lo: 512, hi: 16777215 },
  DefaultTime2Wait: { kind: 'max', lo: 0, hi: 3600 },
  DefaultTime2Retain: { kind: 'min', lo: 0, hi: 3600 },
  MaxOutstandingR2T: { kind: 'min', lo: 1, hi: 65535 },
  DataPDUInOrder: { kind: 'or' },
  DataSequenceInOrder: { kind: 'or' },
  ErrorRecoveryLevel: { kind: 'min', lo: 0, hi: 2 },
};

export type Digest = 'None' | 'CRC32C';

/** The values a session runs with once login is over. */
export interface SessionParams {
  headerDigest: Digest;
  dataDigest: Digest;
  maxConnections: number;
  initialR2T: boolean;
  immediateData: boolean;
  /** What we declared we can receive in one PDU. */
  maxRecvDataSegmentLength: number;
  /** What the target declared it can receive: our limit for each PDU we send. */
  maxXmitDataSegmentLength: number;
  maxBurstLength: number;
  firstBurstLength: number;
  defaultTime2Wait: number;
  defaultTime2Retain: number;
  maxOutstandingR2T: number;
  dataPDUInOrder: boolean;
  dataSequenceInOrder: boolean;
  errorRecoveryLevel: number;
}

/** RFC 7143 defaults: what holds for a key nobody negotiated. */
export const DEFAULT_PARAMS: SessionParams = {
  headerDigest: 'None',
  dataDigest: 'None',
  maxConnections: 1,
  initialR2T: true,
  immediateData: true,
  maxRecvDataSegmentLength: 8192,
  maxXmitDataSegmentLength: 8192,
  maxBurstLength: 262144,
  firstBurstLength: 65536,
  defaultTime2Wait: 2,
  defaultTime2Retain: 20,
  maxOutstandingR2T: 1,
  dataPDUInOrder: true,
  dataSequenceInOrder: true,
  errorRecoveryLevel: 0,
};

const PARAM_OF_KEY: Record<string, keyof SessionParams> = {
  HeaderDigest: 'headerDigest',
  DataDigest: 'dataDigest',
  MaxConnections: 'maxConnections',
  InitialR2T: 'initialR2T',
  ImmediateData: 'immediateData',
  MaxBurstLength: 'maxBurstLength',
  FirstBurstLength: 'firstBurstLength',
  DefaultTime2Wait: 'defaultTime2Wait',
  DefaultTime2Retain: 'defaultTime2Retain',
  MaxOutstandingR2T: 'maxOutstandingR2T',
  DataPDUInOrder: 'dataPDUInOrder',
  DataSequenceInOrder: 'dataSequenceInOrder',
  ErrorRecoveryLevel: 'errorRecoveryLevel',
};

type Outcome = { ok: true; value: string } | { ok: false; error: MotusError };

const fail = (key: string, why: string): Outcome => ({ ok: false, error: iscsiError('MOTUS_E_ISCSI_NEGOTIATION', `negotiation of ${key} failed: ${why}`, { key }) });

function number(rule: { lo: number; hi: number }, key: string, value: string): { ok: true; n: number } | { ok: false; error: MotusError } {
  if (!/^(0x[0-9a-fA-F]+|[0-9]+)$/.test(value)) return fail(key, `"${value}" is not a number`) as { ok: false; error: MotusError };
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < rule.lo || n > rule.hi) return fail(key, `${value} is outside ${rule.lo}..${rule.hi}`) as { ok: false; error: MotusError };
  return { ok: true, n };
}

function bool(key: string, value: string): { ok: true; b: boolean } | { ok: false; error: MotusError } {
  if (value === 'Yes') return { ok: true, b: true };
  if (value === 'No') return { ok: true, b: false };
  return fail(key, `"${value}" is neither Yes nor No`) as { ok: false; error: MotusError };
}

/**
 * The responder's side: the value to answer when the other side offers `theirs`
 * and we would have `ours` (for lists, ours is our preference order).
 */
export function respond(key: string, theirs: string, ours: string): Outcome {
  const rule = KEY_RULES[key];
  if (!rule) return { ok: true, value: 'NotUnderstood' };
  switch (rule.kind) {
    case 'list': {
      const offered = theirs.split(',');
      const pick = ours.split(',').find((v) => offered.includes(v) && rule.values.includes(v));
      return { ok: true, value: pick ?? 'Reject' };
    }
    case 'min':
    case 'max': {
      const a = number(rule, key, theirs);
      if (!a.ok) return a;
      const b = number(rule, key, ours);
      if (!b.ok) return b;
      return { ok: true, value: String(rule.kind === 'min' ? Math.min(a.n, b.n) : Math.max(a.n, b.n)) };
    }
    case 'or':
    case 'and': {
      const a = bool(key, theirs);
      if (!a.ok) return a;
      const b = bool(key, ours);
      if (!b.ok) return b;
      const r = rule.kind === 'or' ? a.b || b.b : a.b && b.b;
      return { ok: true, value: r ? 'Yes' : 'No' };
    }
    case 'declarative': {
      const a = number(rule, key, theirs);
      return a.ok ? { ok: true, value: String(a.n) } : a;
    }
  }
}

/**
 * The offerer's side: checks that the answer to our offer is one the rules allow
 * and returns the negotiated value. "Irrelevant" and "NotUnderstood" leave the
 * key at our offer when that is allowed to stand alone.
 */
export function checkAnswer(key: string, offered: string, answer: string): Outcome {
  const rule = KEY_RULES[key];
  if (!rule) return { ok: true, value: answer };
  if (answer === 'Irrelevant') return { ok: true, value: offered };
  if (answer === 'NotUnderstood' || answer === 'Reject') {
    if (rule.kind === 'list' && !offered.split(',').includes('None')) return fail(key, `the target answered ${answer} to ${offered}`);
    return { ok: true, value: rule.kind === 'list' ? 'None' : defaultValue(key) };
  }
  switch (rule.kind) {
    case 'list':
      if (!offered.split(',').includes(answer)) return fail(key, `the target chose "${answer}", which we did not offer (${offered})`);
      return { ok: true, value: answer };
    case 'min':
    case 'max': {
      const a = number(rule, key, answer);
      if (!a.ok) return a;
      const o = number(rule, key, offered);
      if (!o.ok) return o;
      if (rule.kind === 'min' && a.n > o.n) return fail(key, `the target answered ${a.n}, more than the ${o.n} offered (the result is the minimum)`);
      if (rule.kind === 'max' && a.n < o.n) return fail(key, `the target answered ${a.n}, less than the ${o.n} offered (the result is the maximum)`);
      return { ok: true, value: String(a.n) };
    }
    case 'or':
    case 'and': {
      const a = bool(key, answer);
      if (!a.ok) return a;
      const o = bool(key, offered);
      if (!o.ok) return o;
      if (rule.kind === 'or' && o.b && !a.b) return fail(key, 'the target answered No to Yes (the result is a Boolean OR)');
      if (rule.kind === 'and' && !o.b && a.b) return fail(key, 'the target answered Yes to No (the result is a Boolean AND)');
      return { ok: true, value: answer };
    }
    case 'declarative': {
      const a = number(rule, key, answer);
      return a.ok ? { ok: true, value: String(a.n) } : a;
    }
  }
}

function defaultValue(key: string): string {
  const p = PARAM_OF_KEY[key];
  const v = p ? DEFAULT_PARAMS[p] : undefined;
  return typeof v === 'boolean' ? (v ? 'Yes' : 'No') : String(v ?? '');
}

/** Writes one negotiated key into the session parameters. */
export function applyKey(params: SessionParams, key: string, value: string): void {
  const p = PARAM_OF_KEY[key];
  if (!p) return;
  const current = params[p];
  if (typeof current === 'boolean') (params as unknown as Record<string, unknown>)[p] = value === 'Yes';
  else if (typeof current === 'number') (params as unknown as Record<string, unknown>)[p] = Number(value);
  else (params as unknown as Record<string, unknown>)[p] = value;
}

/** What we ask for; the login turns these into offers. */
export interface ParamPreferences {
  headerDigest: Digest[];
  dataDigest: Digest[];
  maxRecvDataSegmentLength: number;
  maxBurstLength: number;
  firstBurstLength: number;
  initialR2T: boolean;
  immediateData: boolean;
  maxOutstandingR2T: number;
}

export const DEFAULT_PREFERENCES: ParamPreferences = {
  headerDigest: ['None'],
  dataDigest: ['None'],
  maxRecvDataSegmentLength: 262144,
  maxBurstLength: 1048576,
  firstBurstLength: 262144,
  initialR2T: false,
  immediateData: true,
  maxOutstandingR2T: 1,
};

export function offers(pref: ParamPreferences): Array<[string, string]> {
  const yn = (b: boolean): string => (b ? 'Yes' : 'No');
  return [
    ['HeaderDigest', pref.headerDigest.join(',')],
    ['DataDigest', pref.dataDigest.join(',')],
    ['MaxConnections', '1'],
    ['InitialR2T', yn(pref.initialR2T)],
    ['ImmediateData', yn(pref.immediateData)],
    ['MaxRecvDataSegmentLength', String(pref.maxRecvDataSegmentLength)],
    ['MaxBurstLength', String(pref.maxBurstLength)],
    ['FirstBurstLength', String(Math.min(pref.firstBurstLength, pref.maxBurstLength))],
    ['DefaultTime2Wait', '0'],
    ['DefaultTime2Retain', '0'],
    ['MaxOutstandingR2T', String(pref.maxOutstandingR2T)],
    ['DataPDUInOrder', 'Yes'],
    ['DataSequenceInOrder', 'Yes'],
    ['ErrorRecoveryLevel', '0'],
  ];
}

/**
 * The final consistency rules that span keys: FirstBurstLength never exceeds
 * MaxBurstLength (RFC 7143 13.14).
 */
export function finalizeParams(params: SessionParams): SessionParams {
  return { ...params, firstBurstLength: Math.min(params.firstBurstLength, params.maxBurstLength) };
}
