import { parsePortal } from './connection.js';
import type { ChapCredentials } from './login.js';
import { Session } from './session.js';
import type { TextPairs } from './text.js';

export interface DiscoveredTarget {
  name: string;
  /** Portals as the target lists them, with their portal group tags. */
  portals: Array<{ host: string; port: number; tpgt?: number }>;
}

export interface DiscoveryOptions {
  initiatorIqn?: string;
  chap?: ChapCredentials;
  mutualChap?: ChapCredentials;
  timeoutMs?: number;
}

/** Reads a SendTargets answer: each TargetName opens a record, TargetAddress lines belong to it. */
export function parseSendTargets(pairs: TextPairs): DiscoveredTarget[] {
  const targets: DiscoveredTarget[] = [];
  for (const [key, value] of pairs) {
    if (key === 'TargetName') targets.push({ name: value, portals: [] });
    else if (key === 'TargetAddress' && targets.length > 0) {
      const m = /^(\[[^\]]+\]|[^:,]+)(?::(\d+))?(?:,(\d+))?$/.exec(value);
      if (!m) continue;
      const host = m[1]!.startsWith('[') ? m[1]!.slice(1, -1) : m[1]!;
      const portal: { host: string; port: number; tpgt?: number } = { host, port: m[2] ? Number(m[2]) : 3260 };
      if (m[3]) portal.tpgt = Number(m[3]);
      targets[targets.length - 1]!.portals.push(portal);
    }
  }
  return targets;
}

/** SendTargets discovery on a portal: a discovery session, one text exchange, logout. */
export async function discover(portal: string, options: DiscoveryOptions = {}): Promise<DiscoveredTarget[]> {
  const timeoutMs = options.timeoutMs ?? 10000;
  const session = await Session.open({
    portal: parsePortal(portal),
    initiatorName: options.initiatorIqn ?? 'iqn.2026-01.dev.motus:discovery',
    ...(options.chap ? { chap: options.chap } : {}),
    ...(options.mutualChap ? { mutualChap: options.mutualChap } : {}),
    connectTimeoutMs: timeoutMs,
    loginTimeoutMs: timeoutMs,
    commandTimeoutMs: timeoutMs,
    keepaliveIntervalMs: 0,
    reconnectTimeoutMs: 0,
  });
  try {
    return parseSendTargets(await session.text([['SendTargets', 'All']], timeoutMs));
  } finally {
    await session.logout(timeoutMs);
  }
}
