import type { MotusError } from '@motus/sdk';
import { CHAP_MD5, chapResponse, decodeChapValue, encodeChapValue, newChallenge, sameResponse } from './chap.js';
import type { Connection } from './connection.js';
import { iscsiError } from './errors.js';
import {
  applyKey, checkAnswer, DEFAULT_PARAMS, finalizeParams, KEY_RULES, offers, type ParamPreferences, respond, type SessionParams,
} from './negotiation.js';
import { type LoginResponsePdu, PduOpcode, type Pdu } from './pdu.js';
import { decodeText, encodeText, type TextPairs } from './text.js';

export const Stage = { Security: 0, Operational: 1, FullFeature: 3 } as const;

export interface ChapCredentials {
  user: string;
  secret: string;
}

export interface LoginRequestOptions {
  initiatorName: string;
  /** Absent for a discovery session. */
  targetName?: string;
  isid: Buffer;
  /** Zero for a new session; the target assigns it. */
  tsih?: number;
  chap?: ChapCredentials;
  /** The target's credentials, checked when the target answers our challenge. */
  mutualChap?: ChapCredentials;
  preferences: ParamPreferences;
  cmdSN: number;
  itt: number;
  timeoutMs: number;
}

export interface LoginResult {
  params: SessionParams;
  tsih: number;
  /** The CmdSN the next non-immediate command carries. */
  cmdSN: number;
  expStatSN: number;
  maxCmdSN: number;
  targetAlias?: string;
  targetPortalGroupTag?: number;
  /** Every key the target sent, in order, for diagnostics. */
  targetKeys: TextPairs;
}

const LOGIN_STATUS: Record<number, string> = {
  0x0101: 'the target moved temporarily',
  0x0102: 'the target moved permanently',
  0x0200: 'initiator error',
  0x0201: 'authentication failed',
  0x0202: 'the initiator is not authorized to access this target',
  0x0203: 'the target does not exist',
  0x0204: 'the target was removed',
  0x0205: 'unsupported iSCSI version',
  0x0206: 'too many connections',
  0x0207: 'a required login parameter is missing',
  0x0208: 'cannot include the connection in the session',
  0x0209: 'session type not supported',
  0x020a: 'the session does not exist',
  0x020b: 'invalid request during login',
  0x0300: 'target error',
  0x0301: 'service unavailable',
  0x0302: 'the target is out of resources',
};

export function loginStatusText(statusClass: number, statusDetail: number): string {
  return LOGIN_STATUS[(statusClass << 8) | statusDetail] ?? `status class ${statusClass}, detail ${statusDetail}`;
}

/** At most this many request/response rounds: a target that keeps answering "continue" is not followed forever. */
const MAX_ROUNDS = 24;

/**
 * Runs the login phase on a fresh connection (RFC 7143 6.2, 6.3): security
 * negotiation with CHAP when configured, then operational negotiation by the
 * rules of section 13. Resolves once the target moves the connection to full
 * feature phase.
 */
export function login(conn: Connection, options: LoginRequestOptions): Promise<LoginResult> {
  return new Promise((resolve, reject) => {
    let done = false;
    let expStatSN = 0;
    let stage: number = Stage.Security;
    let rounds = 0;
    const targetKeys: TextPairs = [];
    const params: SessionParams = { ...DEFAULT_PARAMS, maxRecvDataSegmentLength: options.preferences.maxRecvDataSegmentLength };
    const ourOffers = new Map(offers(options.preferences));
    let chapState: 'none' | 'method' | 'algorithm' | 'response' | 'done' = options.chap ? 'method' : 'none';
    let ourChallenge: { id: number; challenge: Buffer } | undefined;
    let received: Buffer[] = [];

    const finish = (error: MotusError | undefined, result?: LoginResult): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      conn.onPdu = () => {};
      conn.onEnd = () => {};
      if (error) {
        conn.end();
        reject(error);
      } else resolve(result!);
    };
    const timer = setTimeout(() => finish(iscsiError('MOTUS_E_TIMEOUT', `login to ${options.targetName ?? 'discovery'} did not finish within ${options.timeoutMs} ms`, { target: options.targetName })), options.timeoutMs);

    const send = (keys: TextPairs, transit: boolean, nsg: number): void => {
      conn.send({
        opcode: PduOpcode.LoginRequest, immediate: true, transit, cont: false, csg: stage, nsg: transit ? nsg : 0,
        versionMax: 0, versionMin: 0, isid: options.isid, tsih: options.tsih ?? 0, itt: options.itt, cid: 0,
        cmdSN: options.cmdSN, expStatSN, data: encodeText(keys),
      });
    };

    /** Our offers still unanswered: each answer is checked against the offer it answers. */
    let sentOffers = new Map<string, string>();

    const startOperational = (): void => {
      stage = Stage.Operational;
      sentOffers = new Map(ourOffers);
      send([...ourOffers], true, Stage.FullFeature);
    };

    const securityKeys = (): TextPairs => {
      const keys: TextPairs = [['InitiatorName', options.initiatorName]];
      if (options.targetName) keys.push(['TargetName', options.targetName], ['SessionType', 'Normal']);
      else keys.push(['SessionType', 'Discovery']);
      keys.push(['AuthMethod', !options.chap ? 'None' : options.mutualChap ? 'CHAP' : 'CHAP,None']);
      return keys;
    };

    const authFail = (why: string): void => finish(iscsiError('MOTUS_E_ISCSI_AUTH', `CHAP authentication with ${options.targetName ?? 'the discovery portal'} failed: ${why}`, { target: options.targetName }));

    const onSecurity = (res: LoginResponsePdu, keys: Map<string, string>): void => {
      const method = keys.get('AuthMethod');
      if (chapState === 'method') {
        if (method === 'None' || (method === undefined && res.transit)) {
          if (options.mutualChap) return authFail('the target did not accept CHAP, so it cannot prove its identity (mutual CHAP required)');
          chapState = 'none';
        } else if (method === 'CHAP') {
          chapState = 'algorithm';
          return send([['CHAP_A', CHAP_MD5]], false, 0);
        } else return finish(iscsiError('MOTUS_E_ISCSI_NEGOTIATION', `the target answered AuthMethod=${method ?? '(nothing)'} to CHAP`, { target: options.targetName }));
      } else if (chapState === 'algorithm') {
        if (keys.get('CHAP_A') !== CHAP_MD5) return authFail(`the target chose CHAP algorithm ${keys.get('CHAP_A') ?? '(none)'}, only MD5 (5) is supported`);
        const id = Number(keys.get('CHAP_I'));
        const challenge = decodeChapValue(keys.get('CHAP_C') ?? '');
        if (!Number.isInteger(id) || id < 0 || id > 255 || !challenge || challenge.length === 0) return authFail('the target sent no valid CHAP_I/CHAP_C');
        const reply: TextPairs = [['CHAP_N', options.chap!.user], ['CHAP_R', encodeChapValue(chapResponse(id, options.chap!.secret, challenge))]];
        if (options.mutualChap) {
          ourChallenge = newChallenge();
          // A target reflecting our own challenge back could replay our answer (RFC 7143 12.1.3).
          while (ourChallenge.challenge.equals(challenge)) ourChallenge = newChallenge();
          reply.push(['CHAP_I', String(ourChallenge.id)], ['CHAP_C', encodeChapValue(ourChallenge.challenge)]);
        }
        chapState = 'response';
        return send(reply, true, Stage.Operational);
      } else if (chapState === 'response') {
        if (options.mutualChap && ourChallenge) {
          const name = keys.get('CHAP_N');
          const response = decodeChapValue(keys.get('CHAP_R') ?? '');
          if (name === undefined || !response) return authFail('the target did not answer our mutual CHAP challenge');
          if (name !== options.mutualChap.user) return authFail(`the target identified as "${name}", expected "${options.mutualChap.user}"`);
          if (!sameResponse(response, chapResponse(ourChallenge.id, options.mutualChap.secret, ourChallenge.challenge))) return authFail('the target answered our mutual CHAP challenge with the wrong secret');
        }
        chapState = 'done';
      }
      if (res.transit && res.nsg === Stage.Operational) return startOperational();
      if (res.transit && res.nsg === Stage.FullFeature) return finish(iscsiError('MOTUS_E_ISCSI_NEGOTIATION', 'the target skipped operational negotiation', { target: options.targetName }));
      // The target wants another security round with nothing new from us: ask to move on.
      send([], true, Stage.Operational);
    };

    const onOperational = (res: LoginResponsePdu, pairs: TextPairs): void => {
      const answers: TextPairs = [];
      for (const [key, value] of pairs) {
        const offered = sentOffers.get(key);
        if (key === 'MaxRecvDataSegmentLength') {
          // Declarative: the target's value bounds what we send, whatever we declared.
          sentOffers.delete(key);
          const r = respond(key, value, value);
          if (!r.ok) return finish(r.error);
          params.maxXmitDataSegmentLength = Number(r.value);
        } else if (offered !== undefined) {
          sentOffers.delete(key);
          const r = checkAnswer(key, offered, value);
          if (!r.ok) return finish(r.error);
          applyKey(params, key, r.value);
        } else if (KEY_RULES[key]) {
          // The target offers a key we did not: answer by the same rule with our preference.
          const ours = ourOffers.get(key) ?? value;
          const r = respond(key, value, ours);
          if (!r.ok) return finish(r.error);
          if (r.value === 'Reject') return finish(iscsiError('MOTUS_E_ISCSI_NEGOTIATION', `the target offered ${key}=${value}, which we cannot accept`, { key }));
          applyKey(params, key, r.value);
          answers.push([key, r.value]);
        } else if (key === 'TargetAlias' || key === 'TargetPortalGroupTag' || key === 'TargetAddress') {
          // Declarations of the target: nothing to answer.
          continue;
        } else if (value !== 'NotUnderstood' && value !== 'Irrelevant') {
          answers.push([key, 'NotUnderstood']);
        }
      }
      if (res.transit && res.nsg === Stage.FullFeature && answers.length === 0) {
        const alias = pairs.find(([k]) => k === 'TargetAlias')?.[1];
        const tpgt = pairs.find(([k]) => k === 'TargetPortalGroupTag')?.[1];
        const result: LoginResult = {
          params: finalizeParams(params), tsih: res.tsih, cmdSN: res.expCmdSN, expStatSN, maxCmdSN: res.maxCmdSN, targetKeys,
        };
        if (alias !== undefined) result.targetAlias = alias;
        if (tpgt !== undefined && /^\d+$/.test(tpgt)) result.targetPortalGroupTag = Number(tpgt);
        return finish(undefined, result);
      }
      send(answers, true, Stage.FullFeature);
    };

    conn.onEnd = (error) => finish(iscsiError('MOTUS_E_ISCSI_DISCONNECTED', `the connection closed during login${error ? `: ${error.message}` : ''}`, { target: options.targetName }, { cause: error }));
    conn.onPdu = (pdu: Pdu) => {
      if (done) return;
      if (pdu.opcode !== PduOpcode.LoginResponse) {
        return finish(iscsiError('MOTUS_E_ISCSI_PROTOCOL', `expected a Login Response during login, got opcode 0x${pdu.opcode.toString(16)}`, { opcode: pdu.opcode }));
      }
      if (++rounds > MAX_ROUNDS) return finish(iscsiError('MOTUS_E_ISCSI_NEGOTIATION', `login did not complete after ${MAX_ROUNDS} exchanges`));
      if (pdu.statusClass !== 0) {
        const text = loginStatusText(pdu.statusClass, pdu.statusDetail);
        const data = { target: options.targetName, statusClass: pdu.statusClass, statusDetail: pdu.statusDetail };
        if (pdu.statusClass === 2 && pdu.statusDetail === 1) {
          if (!options.chap) return authFail('the target requires CHAP and no CHAP credentials were given');
          return authFail(`the target reports: ${text} (check the CHAP user and secret)`);
        }
        return finish(iscsiError('MOTUS_E_ISCSI_LOGIN', `login to ${options.targetName ?? 'the discovery portal'} refused: ${text}`, data));
      }
      if (pdu.itt !== options.itt) return finish(iscsiError('MOTUS_E_ISCSI_PROTOCOL', `Login Response for task tag ${pdu.itt}, ours is ${options.itt}`));
      if (pdu.versionActive !== 0) return finish(iscsiError('MOTUS_E_ISCSI_LOGIN', `the target speaks iSCSI version ${pdu.versionActive}, we speak 0`));
      expStatSN = (pdu.statSN + 1) >>> 0;
      received.push(pdu.data);
      // Text may span several responses (C bit); acknowledge each with an empty request.
      if (pdu.cont) return send([], false, 0);
      const decoded = decodeText(Buffer.concat(received));
      received = [];
      if (!decoded.ok) return finish(decoded.error);
      targetKeys.push(...decoded.pairs);
      if (pdu.csg !== stage) return finish(iscsiError('MOTUS_E_ISCSI_PROTOCOL', `the target answered in login stage ${pdu.csg}, we are in ${stage}`));
      if (stage === Stage.Security) onSecurity(pdu, new Map(decoded.pairs));
      else onOperational(pdu, decoded.pairs);
    };

    send(securityKeys(), !options.chap, Stage.Operational);
  });
}
