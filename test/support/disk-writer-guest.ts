/**
 * What the shared-storage end-to-end tests (NAS, iSCSI) have in common: a site of
 * three hosts whose migrations end quickly when stalled, a guest running the guest
 * kit's disk writer, the records it acknowledged on its serial console and their
 * check on the storage afterwards.
 */
import { readFileSync } from 'node:fs';
import type { MigrationEvent, MotusClient, VmInfo, VmSpec } from '@motus/sdk';
import { guestKit } from './guest-kit.js';
import { qemuPidsOf } from './site.js';
import { sleep } from './system.js';

/** Bytes of one record of motus-diskwriter (test/guest-kit/README.md). */
export const DISK_RECORD_BYTES = 4096;

/** A site file with hosts host-a, host-b, host-c and the given `plugins:` list (indented YAML items). */
export function diskWriterSiteYaml(site: string, plugins: string): string {
  return `
site: ${site}
migration:
  maxBandwidthMiBps: 256
  # A stalled migration (the rollback tests freeze their destination) ends within ~22 s.
  timeoutBaseSeconds: 20
  timeoutSecondsPerGiB: 10
hosts:
  - name: host-a
    memoryMiB: 1024
  - name: host-b
    memoryMiB: 1024
  - name: host-c
    memoryMiB: 1024
plugins:
${plugins.replace(/^\n+/, '')}`;
}

/** vm1: the guest kit with its disk writer on /dev/vda, the disk at `diskPath`. */
export function diskWriterSpec(diskPath: string): VmSpec {
  const kit = guestKit();
  return {
    name: 'vm1',
    memoryMiB: 192,
    vcpus: 1,
    boot: { kind: 'kernel', kernel: kit.kernel, initrd: kit.initrd, cmdline: kit.cmdline({ extra: ['motus.disk=/dev/vda:40'] }) },
    disks: [{ id: 'disk0', path: diskPath, format: 'raw' }],
  };
}

const ACK = /MOTUS-DISK seq=(\d+)\s*$/;

/** Acknowledged seqs in the joined serial logs (source then destination, so a cut line is whole again). */
export function acknowledgedSeqs(logs: string[]): number[] {
  const text = logs.map((p) => readFileSync(p, 'latin1')).join('');
  return text
    .split('\n')
    .slice(0, -1)
    .flatMap((line) => {
      const m = ACK.exec(line);
      return m ? [Number(m[1])] : [];
    });
}

/** What is wrong with record `seq` as read back from the storage, as motus-diskwriter lays it out. */
export function diskRecordProblem(block: Buffer, seq: number): string | undefined {
  if (block.subarray(0, 8).toString('latin1') !== 'MOTUSREC') return `block ${seq} holds no record`;
  const stored = block.readBigUInt64LE(8);
  if (stored !== BigInt(seq)) return `block ${seq} holds record ${stored}`;
  let x = (BigInt(seq) * 0x9e3779b97f4a7c15n + 1n) & 0xffffffffffffffffn;
  const mask = 0xffffffffffffffffn;
  for (let i = 64; i < DISK_RECORD_BYTES; i++) {
    x ^= (x << 13n) & mask;
    x ^= x >> 7n;
    x ^= (x << 17n) & mask;
    if (block[i] !== Number(x & 0xffn)) return `record ${seq} is torn at byte ${i}`;
  }
  return undefined;
}

export async function vmInfoOf(client: MotusClient, name: string): Promise<VmInfo> {
  const vm = (await client.vms()).find((v) => v.name === name);
  if (!vm) throw new Error(`VM ${name} is not in the inventory`);
  return vm;
}

/** Requests a migration and follows its events to the end; `onEvent` sees each as it comes. */
export async function migrateAndFollow(client: MotusClient, vm: string, destination: string, onEvent?: (event: MigrationEvent) => Promise<void>): Promise<MigrationEvent[]> {
  const summary = await client.migrate({ vm, destination });
  const events: MigrationEvent[] = [];
  for await (const event of client.migrationEvents(summary.id)) {
    events.push(event);
    await onEvent?.(event);
  }
  return events;
}

/**
 * Samples `read` every `everyMs` until stopped and keeps each change of its value
 * (who owns a lock or a LUN, say); `onSample` sees every value as it comes.
 */
export function watchChanges(read: () => Promise<string>, everyMs: number, onSample?: (value: string) => Promise<void>): { seen: string[]; stop(): Promise<void> } {
  const seen: string[] = [];
  let watching = true;
  const loop = (async () => {
    while (watching) {
      const value = await read().catch((e: unknown) => `error ${(e as Error).message}`);
      if (seen.at(-1) !== value) seen.push(value);
      await onSample?.(value);
      await sleep(everyMs);
    }
  })();
  return {
    seen,
    stop: async () => {
      watching = false;
      await loop;
    },
  };
}

/**
 * SIGSTOPs the one copy of `vm` that is not `sourcePid` (the migration's destination)
 * the first time `freeze` finds it, so the migration fails after its switchover.
 * `locate` finds it beforehand (once the destination is prepared), so that the
 * freeze itself is one signal, quick enough to beat the switchover on a loaded machine.
 */
export function destinationFreezer(vm: string, sourcePid: number): { readonly pid: number | undefined; locate(): Promise<void>; freeze(): Promise<void> } {
  let located: number | undefined;
  let frozen: number | undefined;
  const locate = async () => {
    if (located !== undefined) return;
    const destination = (await qemuPidsOf(vm)).filter((pid) => pid !== sourcePid);
    if (destination.length === 1) located = destination[0]!;
  };
  return {
    get pid() {
      return frozen;
    },
    locate,
    async freeze() {
      if (frozen !== undefined) return;
      if (located === undefined) await locate();
      if (located !== undefined) {
        frozen = located;
        process.kill(frozen, 'SIGSTOP');
      }
    },
  };
}

/** Freezes the destination at the migration's switchover event (located once it is prepared). */
export function freezeAtSwitchover(freezer: { locate(): Promise<void>; freeze(): Promise<void> }): (event: MigrationEvent) => Promise<void> {
  return async (event) => {
    if (event.type === 'prepared') await freezer.locate();
    if (event.type === 'switchover') await freezer.freeze();
  };
}
