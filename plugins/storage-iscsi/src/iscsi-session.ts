import { type DecodedLun, encodeLun, parseReportLuns, reportLuns, statusError } from '@motus/sdk';
import { type FrameTap, parsePortal } from './connection.js';
import { iscsiError } from './errors.js';
import type { ChapCredentials } from './login.js';
import { Lun, type LunOptions } from './lun.js';
import type { Digest, ParamPreferences, SessionParams } from './negotiation.js';
import type { Observable } from 'rxjs';
import { type CommandResult, Session, type SessionEvent, type SessionOptions } from './session.js';

export interface IscsiLoginOptions {
  /** `host:port` of the target portal. */
  portal: string;
  targetIqn: string;
  initiatorIqn: string;
  /** Our CHAP credentials, as the target knows them. */
  chap?: ChapCredentials;
  /** The target's credentials: with these, the target must prove itself too. */
  mutualChap?: ChapCredentials;
  /** true: require CRC32C header and data digests; or choose each. */
  digests?: boolean | { header?: boolean; data?: boolean };
  /** Operational parameters to ask for (MaxBurstLength, ImmediateData, …). */
  params?: Partial<ParamPreferences>;
  connectTimeoutMs?: number;
  loginTimeoutMs?: number;
  commandTimeoutMs?: number;
  keepaliveIntervalMs?: number;
  keepaliveTimeoutMs?: number;
  reconnectTimeoutMs?: number;
  reconnectDelayMs?: number;
  lun?: LunOptions;
  /** Sees every PDU on the wire (for captures). */
  tap?: FrameTap;
  isid?: Buffer;
}

function digestList(on: boolean | undefined): Digest[] {
  return on ? ['CRC32C'] : ['None'];
}

export function sessionOptions(o: IscsiLoginOptions): SessionOptions {
  const header = typeof o.digests === 'object' ? o.digests.header : o.digests;
  const data = typeof o.digests === 'object' ? o.digests.data : o.digests;
  const opts: SessionOptions = {
    portal: parsePortal(o.portal),
    initiatorName: o.initiatorIqn,
    targetName: o.targetIqn,
    preferences: { headerDigest: digestList(header), dataDigest: digestList(data), ...o.params },
  };
  for (const k of ['chap', 'mutualChap', 'connectTimeoutMs', 'loginTimeoutMs', 'commandTimeoutMs', 'keepaliveIntervalMs', 'keepaliveTimeoutMs', 'reconnectTimeoutMs', 'reconnectDelayMs', 'tap', 'isid'] as const) {
    if (o[k] !== undefined) (opts as unknown as Record<string, unknown>)[k] = o[k];
  }
  return opts;
}

/** A logged-in session to one target: the entry point of the initiator. */
export class IscsiSession {
  private constructor(readonly transport: Session, readonly targetIqn: string, private readonly lunOptions: LunOptions) {}

  static async login(options: IscsiLoginOptions): Promise<IscsiSession> {
    if (options.mutualChap && !options.chap) throw iscsiError('MOTUS_E_INVALID_REQUEST', 'mutual CHAP needs our own CHAP credentials too');
    const session = await Session.open(sessionOptions(options));
    return new IscsiSession(session, options.targetIqn, options.lun ?? {});
  }

  /** Lost and restored connections, target messages, the end of the session. */
  get events$(): Observable<SessionEvent> {
    return this.transport.events$;
  }

  get params(): SessionParams {
    return this.transport.params;
  }

  lun(n: number): Lun {
    return new Lun(this.transport, n, encodeLun(n), this.lunOptions);
  }

  /** REPORT LUNS through LUN 0, as SAM requires every target to answer it there. */
  async reportLuns(): Promise<DecodedLun[]> {
    const cmd = reportLuns(16384);
    const r: CommandResult = await this.transport.execute({ lun: encodeLun(0), cdb: cmd.cdb, dataIn: cmd.dataIn, name: cmd.name });
    const err = statusError(r.status, r.sense, cmd.name);
    if (err) throw err;
    const parsed = parseReportLuns(r.data);
    if (!parsed.ok) throw parsed.error;
    return parsed.value.luns;
  }

  ping(timeoutMs?: number): Promise<number> {
    return this.transport.ping(timeoutMs);
  }

  logout(): Promise<void> {
    return this.transport.logout();
  }
}
