/**
 * The announce step on the server: after the destination runs (QEMU sends its
 * self-announce RARPs after an incoming migration by default), every switch must
 * reach each of the VM's MACs through the destination host — its local port on
 * the destination, the uplink to the destination everywhere else. Polled until a
 * deadline; a switch that still disagrees then is named in the error.
 */
import { MotusError, type NicSpec } from '@motus/sdk';

export type LocateCall = (host: string, mac: string, network: string) => Promise<string | undefined>;

export interface Disagreement {
  host: string;
  /** What that switch answers (undefined: it does not know the MAC), or why it did not answer. */
  location?: string;
  error?: string;
  expected: string;
}

export interface ConfirmOptions {
  nics: readonly NicSpec[];
  destination: string;
  hosts: readonly string[];
  locate: LocateCall;
  timeoutMs: number;
  pollMs: number;
  signal?: AbortSignal;
}

function expectedAt(host: string, destination: string): string {
  return host === destination ? 'local:<port>' : `uplink:${destination}`;
}

function agrees(host: string, destination: string, location: string | undefined): boolean {
  return host === destination ? location?.startsWith('local:') === true : location === `uplink:${destination}`;
}

/** Resolves once every host agrees for every NIC; rejects with MOTUS_E_NET_RELOCATION_UNCONFIRMED otherwise. */
export async function confirmRelocation(options: ConfirmOptions): Promise<{ ms: number; polls: number }> {
  const started = performance.now();
  const deadline = started + options.timeoutMs;
  let polls = 0;
  const pending = new Map(options.nics.map((nic) => [nic.mac.toLowerCase(), { nic, hosts: new Set(options.hosts) }]));
  let last = new Map<string, Disagreement[]>();
  for (;;) {
    polls++;
    last = new Map();
    await Promise.all(
      [...pending.values()].flatMap(({ nic, hosts }) =>
        [...hosts].map(async (host) => {
          const mac = nic.mac.toLowerCase();
          const expected = expectedAt(host, options.destination);
          try {
            const location = await options.locate(host, mac, nic.network);
            if (agrees(host, options.destination, location)) hosts.delete(host);
            else last.set(mac, [...(last.get(mac) ?? []), { host, expected, ...(location !== undefined ? { location } : {}) }]);
          } catch (err) {
            last.set(mac, [...(last.get(mac) ?? []), { host, expected, error: (err as Error).message }]);
          }
        }),
      ),
    );
    for (const [mac, entry] of pending) if (entry.hosts.size === 0) pending.delete(mac);
    if (pending.size === 0) return { ms: Math.round(performance.now() - started), polls };
    if (performance.now() >= deadline || options.signal?.aborted) break;
    await new Promise((resolve) => setTimeout(resolve, Math.min(options.pollMs, Math.max(0, deadline - performance.now()))));
  }
  const [mac, disagreements] = [...last.entries()][0]!;
  const names = disagreements.map((d) => `${d.host} (${d.error ?? d.location ?? 'MAC unknown'}, expected ${d.expected})`).join(', ');
  throw new MotusError(
    'MOTUS_E_NET_RELOCATION_UNCONFIRMED',
    `after ${options.timeoutMs} ms, MAC ${mac} is not reached through ${options.destination} by every switch: ${names}`,
    { mac, destination: options.destination, disagreements, unconfirmed: Object.fromEntries([...last.entries()]) },
  );
}
