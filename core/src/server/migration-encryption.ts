import { MotusError } from '@motus/sdk';
import type { AgentFacts } from '../agent/host-link.js';

export type EncryptionPolicy = 'disabled' | 'opportunistic' | 'required';

/**
 * Whether a migration's memory stream goes over TLS, from the site's policy and
 * what both hosts report: `required` refuses (coded, naming the host and why) when
 * either host cannot, `opportunistic` encrypts when both can, `disabled` never does.
 */
export function decideEncryption(policy: EncryptionPolicy, source: AgentFacts, destination: AgentFacts): boolean {
  if (policy === 'disabled') return false;
  const lacking = [source, destination].filter((host) => !host.migrationTls?.ready);
  if (lacking.length === 0) return true;
  if (policy === 'opportunistic') return false;
  const reasons = lacking.map((host) => host.migrationTls?.reason ?? `host ${host.name} reports no migration TLS credentials`);
  throw new MotusError(
    'MOTUS_E_TLS_UNAVAILABLE',
    `the site requires encrypted migration and ${lacking.map((h) => h.name).join(' and ')} cannot: ${reasons.join('; ')}`,
    { hosts: lacking.map((h) => h.name), reasons, policy },
  );
}
