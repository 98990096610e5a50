/**
 * The four kinds of message a QMP server sends, and a total classifier from any
 * parsed JSON value to one of them or to a typed error.
 */

export type QmpId = string | number;

export interface QmpGreeting {
  kind: 'greeting';
  version: { major: number; minor: number; micro: number; package: string };
  capabilities: string[];
}

export interface QmpReturn {
  kind: 'return';
  id?: QmpId;
  value: unknown;
}

export interface QmpErrorReply {
  kind: 'error';
  id?: QmpId;
  errorClass: string;
  desc: string;
}

export interface QmpEvent {
  kind: 'event';
  event: string;
  data: Record<string, unknown>;
  /** Wall-clock time QEMU stamped the event with, in microseconds since the epoch. */
  timestampUs: number;
}

export type QmpMessage = QmpGreeting | QmpReturn | QmpErrorReply | QmpEvent;

export type QmpDecodeErrorKind = 'invalid-utf8' | 'invalid-json' | 'not-an-object' | 'unknown-shape' | 'line-too-long';

export interface QmpDecodeError {
  kind: QmpDecodeErrorKind;
  detail: string;
  /** The start of the offending line, for logs (at most 200 characters). */
  excerpt: string;
}

export type QmpDecodeResult = { ok: true; message: QmpMessage } | { ok: false; error: QmpDecodeError };

/** A command as it goes on the wire. */
export interface QmpCommand {
  execute: string;
  arguments?: Record<string, unknown>;
  id: QmpId;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isId(value: unknown): value is QmpId {
  return typeof value === 'string' || (typeof value === 'number' && Number.isFinite(value));
}

function num(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : 0;
}

function fail(kind: QmpDecodeErrorKind, detail: string, excerpt: string): QmpDecodeResult {
  return { ok: false, error: { kind, detail, excerpt: excerpt.slice(0, 200) } };
}

/** Classifies a parsed JSON value; `text` only feeds the error excerpt. */
export function classifyMessage(value: unknown, text: string): QmpDecodeResult {
  if (!isRecord(value)) return fail('not-an-object', `a QMP message is a JSON object, got ${Array.isArray(value) ? 'an array' : value === null ? 'null' : typeof value}`, text);
  const id = 'id' in value ? value['id'] : undefined;
  if (id !== undefined && !isId(id)) return fail('unknown-shape', 'the id of a reply must be a string or a number (Motus only sends those)', text);

  if ('return' in value) {
    return { ok: true, message: id === undefined ? { kind: 'return', value: value['return'] } : { kind: 'return', id, value: value['return'] } };
  }
  if ('error' in value) {
    const error = value['error'];
    if (!isRecord(error) || typeof error['class'] !== 'string' || typeof error['desc'] !== 'string') {
      return fail('unknown-shape', 'an error reply carries {"class": string, "desc": string}', text);
    }
    const reply: QmpErrorReply = { kind: 'error', errorClass: error['class'], desc: error['desc'] };
    if (id !== undefined) reply.id = id;
    return { ok: true, message: reply };
  }
  if ('event' in value) {
    if (typeof value['event'] !== 'string') return fail('unknown-shape', 'an event name is a string', text);
    const data = value['data'];
    if (data !== undefined && !isRecord(data)) return fail('unknown-shape', 'event data is an object', text);
    const ts = value['timestamp'];
    const timestampUs = isRecord(ts) ? num(ts['seconds']) * 1_000_000 + num(ts['microseconds']) : 0;
    return { ok: true, message: { kind: 'event', event: value['event'], data: data ?? {}, timestampUs } };
  }
  if ('QMP' in value) {
    const qmp = value['QMP'];
    if (!isRecord(qmp)) return fail('unknown-shape', 'the greeting carries a "QMP" object', text);
    const version = isRecord(qmp['version']) ? qmp['version'] : {};
    const qemu = isRecord(version['qemu']) ? version['qemu'] : {};
    const capabilities = Array.isArray(qmp['capabilities']) ? qmp['capabilities'].filter((c): c is string => typeof c === 'string') : [];
    return {
      ok: true,
      message: {
        kind: 'greeting',
        version: {
          major: num(qemu['major']),
          minor: num(qemu['minor']),
          micro: num(qemu['micro']),
          package: typeof version['package'] === 'string' ? version['package'] : '',
        },
        capabilities,
      },
    };
  }
  return fail('unknown-shape', 'not a greeting, reply, error or event', text);
}
