/** ONC RPC v2 message encoding and reply decoding (RFC 5531 §9), pure. */
import { decodeXdr, XdrWriter, type XdrError, type XdrReader } from './xdr.js';

export const AUTH_NONE = 0;
export const AUTH_SYS = 1;

export type RpcAuth = { flavor: 'none' } | { flavor: 'sys'; uid: number; gid: number; gids?: readonly number[]; machineName?: string; stamp?: number };

export interface RpcCall {
  xid: number;
  prog: number;
  vers: number;
  proc: number;
  auth: RpcAuth;
  args: Buffer | readonly Buffer[];
}

const CALL = 0;
const REPLY = 1;
const MSG_ACCEPTED = 0;
const MSG_DENIED = 1;

/** The opaque_auth body is at most 400 bytes (RFC 5531 §8.2). */
const MAX_AUTH_BODY = 400;

function encodeAuth(w: XdrWriter, auth: RpcAuth): void {
  if (auth.flavor === 'none') {
    w.uint32(AUTH_NONE).opaque(Buffer.alloc(0));
    return;
  }
  const gids = auth.gids ?? [];
  if (gids.length > 16) throw new RangeError('AUTH_SYS carries at most 16 supplementary groups');
  const body = new XdrWriter()
    .uint32(auth.stamp ?? 0)
    .string(auth.machineName ?? 'motus')
    .uint32(auth.uid)
    .uint32(auth.gid)
    .uint32(gids.length);
  for (const g of gids) body.uint32(g);
  w.uint32(AUTH_SYS).opaque(body.toBuffer());
}

/** The call as pieces: a header, then the argument pieces as given (bulk data is not copied). */
export function encodeCallParts(call: RpcCall): Buffer[] {
  const w = new XdrWriter().uint32(call.xid).uint32(CALL).uint32(2).uint32(call.prog).uint32(call.vers).uint32(call.proc);
  encodeAuth(w, call.auth);
  w.uint32(AUTH_NONE).opaque(Buffer.alloc(0));
  const args = Buffer.isBuffer(call.args) ? [call.args] : call.args;
  const argBytes = args.reduce((n, b) => n + b.length, 0);
  if (argBytes % 4 !== 0) throw new RangeError('RPC arguments must be a multiple of 4 bytes');
  return [w.toBuffer(), ...args];
}

export function encodeCall(call: RpcCall): Buffer {
  return Buffer.concat(encodeCallParts(call));
}

export type RpcReplyBody =
  | { status: 'success'; results: Buffer }
  | { status: 'prog-unavail' }
  | { status: 'prog-mismatch'; low: number; high: number }
  | { status: 'proc-unavail' }
  | { status: 'garbage-args' }
  | { status: 'system-err' }
  | { status: 'rpc-mismatch'; low: number; high: number }
  | { status: 'auth-error'; authStat: number };

export interface RpcReply {
  xid: number;
  body: RpcReplyBody;
}

const AUTH_STAT_NAMES: Record<number, string> = {
  0: 'AUTH_OK',
  1: 'AUTH_BADCRED (bogus credentials)',
  2: 'AUTH_REJECTEDCRED (client must begin a new session)',
  3: 'AUTH_BADVERF (bogus verifier)',
  4: 'AUTH_REJECTEDVERF (verifier expired or replayed)',
  5: 'AUTH_TOOWEAK (rejected for security reasons)',
  6: 'AUTH_INVALIDRESP (bogus response verifier)',
  7: 'AUTH_FAILED (reason unknown)',
};

export function describeAuthStat(stat: number): string {
  return AUTH_STAT_NAMES[stat] ?? `auth status ${stat}`;
}

function decodeReplyBody(r: XdrReader): RpcReplyBody {
  const replyStat = r.enumOf([MSG_ACCEPTED, MSG_DENIED], 'reply_stat');
  if (replyStat === MSG_ACCEPTED) {
    r.uint32('verifier flavor');
    r.opaque(MAX_AUTH_BODY, 'verifier body');
    const acceptStat = r.enumOf([0, 1, 2, 3, 4, 5], 'accept_stat');
    switch (acceptStat) {
      case 0:
        return { status: 'success', results: r.rest() };
      case 1:
        return { status: 'prog-unavail' };
      case 2:
        return { status: 'prog-mismatch', low: r.uint32('low version'), high: r.uint32('high version') };
      case 3:
        return { status: 'proc-unavail' };
      case 4:
        return { status: 'garbage-args' };
      default:
        return { status: 'system-err' };
    }
  }
  const rejectStat = r.enumOf([0, 1], 'reject_stat');
  if (rejectStat === 0) return { status: 'rpc-mismatch', low: r.uint32('low version'), high: r.uint32('high version') };
  return { status: 'auth-error', authStat: r.uint32('auth_stat') };
}

/**
 * Decodes a reply record. A record that is a CALL (or garbage) is an error; the
 * xid is reported when it could be read, so a session can fail just that call.
 */
export function decodeReply(record: Buffer): { ok: true; reply: RpcReply } | { ok: false; xid?: number; error: XdrError } {
  const res = decodeXdr(record, (r) => {
    const xid = r.uint32('xid');
    const type = r.uint32('msg_type');
    if (type !== REPLY) r.fail('bad-value', type === CALL ? 'got a CALL where a REPLY was expected' : `msg_type ${type} is neither CALL nor REPLY`);
    return { xid, body: decodeReplyBody(r) };
  });
  if (res.ok) return { ok: true, reply: res.value };
  const xid = record.length >= 4 ? record.readUInt32BE(0) : undefined;
  return xid === undefined ? { ok: false, error: res.error } : { ok: false, xid, error: res.error };
}

/** Decodes a CALL record; used by test servers and by traffic fixtures. */
export function decodeCall(record: Buffer) {
  return decodeXdr(record, (r) => {
    const xid = r.uint32('xid');
    if (r.uint32('msg_type') !== CALL) r.fail('bad-value', 'not a CALL');
    const rpcvers = r.uint32('rpcvers');
    const prog = r.uint32('prog');
    const vers = r.uint32('vers');
    const proc = r.uint32('proc');
    const credFlavor = r.uint32('cred flavor');
    const cred = r.opaque(MAX_AUTH_BODY, 'cred body');
    r.uint32('verf flavor');
    r.opaque(MAX_AUTH_BODY, 'verf body');
    return { xid, rpcvers, prog, vers, proc, credFlavor, cred, args: r.rest() };
  });
}

/** Encodes a reply; used by test servers. */
export function encodeReply(xid: number, body: RpcReplyBody): Buffer {
  const w = new XdrWriter().uint32(xid).uint32(REPLY);
  switch (body.status) {
    case 'rpc-mismatch':
      return w.uint32(MSG_DENIED).uint32(0).uint32(body.low).uint32(body.high).toBuffer();
    case 'auth-error':
      return w.uint32(MSG_DENIED).uint32(1).uint32(body.authStat).toBuffer();
    default:
      break;
  }
  w.uint32(MSG_ACCEPTED).uint32(AUTH_NONE).opaque(Buffer.alloc(0));
  switch (body.status) {
    case 'success':
      return w.uint32(0).raw(body.results).toBuffer();
    case 'prog-unavail':
      return w.uint32(1).toBuffer();
    case 'prog-mismatch':
      return w.uint32(2).uint32(body.low).uint32(body.high).toBuffer();
    case 'proc-unavail':
      return w.uint32(3).toBuffer();
    case 'garbage-args':
      return w.uint32(4).toBuffer();
    case 'system-err':
      return w.uint32(5).toBuffer();
  }
}
