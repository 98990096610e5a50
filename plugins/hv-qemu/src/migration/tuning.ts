import type { MigrationTuning } from '@motus/sdk';

/** The migrate-set-capabilities and migrate-set-parameters arguments a tuning stands for. */
export function tuningToQmp(tuning: MigrationTuning = {}): { capabilities: Record<string, boolean>; parameters: Record<string, unknown> } {
  const parameters: Record<string, unknown> = { ...(tuning.parameters ?? {}) };
  // The typed fields win over the same keys passed raw: they are what the caller named.
  if (tuning.maxBandwidthBytesPerSec !== undefined) parameters['max-bandwidth'] = Math.round(tuning.maxBandwidthBytesPerSec);
  if (tuning.downtimeLimitMs !== undefined) parameters['downtime-limit'] = Math.round(tuning.downtimeLimitMs);
  return { capabilities: { ...(tuning.capabilities ?? {}) }, parameters };
}

/** Builds the tcp: URI for an address and port; IPv6 addresses go in brackets. */
export function tcpUri(host: string, port: number | string): string {
  return host.includes(':') && !host.startsWith('[') ? `tcp:[${host}]:${port}` : `tcp:${host}:${port}`;
}
