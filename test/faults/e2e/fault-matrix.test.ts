/**
 * The fault matrix: a real guest writing numbered durable records to an iSCSI LUN
 * (a real tgtd) or to a disk image on a NAS datastore (a real nfs-ganesha), and
 * serving TCP echoes to a peer that holds one connection to it through Motus's
 * switches, migrates between two hosts that live in their own network namespaces.
 * At a chosen phase of the migration one thing is made to fail: a QEMU, an agent or
 * the server is killed with SIGKILL, the migration link is cut, the iSCSI target or
 * the NFS server is restarted. After each run: the migration ended (completed or
 * rolled back, never stuck), the VM runs on exactly one host (or, where the fault
 * killed its only copy, on none and is `crashed`), every record the guest saw
 * acknowledged is on the datastore, the peer's connection is still open with every
 * byte echoed once and in order (or, for a VM that died, that it died with it), and
 * the audit trail has the outcome.
 *
 * FAULT_ROWS (comma-separated row names, or `all`) and FAULT_REPEAT pick the runs;
 * without them the lean subset of `npm test` runs once. FAULT_REPORT=1 (npm run
 * test:faults) rewrites the results table in docs/reliability.md after every run.
 */
import { expect } from 'chai';
import { existsSync, openSync, readFileSync, readSync, closeSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MigrationEvent, MigrationSummary, VmSpec } from '@motus/sdk';
import { IscsiSession, diskUrl } from '@motus/storage-iscsi';
import { NasDatastore, diskUri, lockPathOf } from '@motus/storage-nas';
import { DISK_RECORD_BYTES, acknowledgedSeqs, diskRecordProblem, diskWriterSpec, guestKit, qemuPidsOf, repoRoot, requireCommand, sleep, waitFor } from '../../support/index.js';
import { startTgt, type Tgt } from '../../storage-iscsi/support/tgt.js';
import { startGanesha, type GaneshaServer } from '../../storage-nas/support/ganesha.js';
import { BRIDGE_ADDRESS, GUEST_ADDRESS, GUEST_CIDR, GUEST_VNI, VXLAN_PORT, createFabric, type Fabric } from '../support/netns.js';
import { startNsSite, type NsSite } from '../support/ns-site.js';
import { TcpPeer } from '../support/peer.js';

const TARGET = 'iqn.2026-01.org.motus.test:faults';
const NAS_IMAGE = 'vm2/disk0.img';
const NAS_DISK_BYTES = 64 * 1024 * 1024;
const GUEST_MAC = '52:54:00:00:0f:0a';
const ECHO_PORT = 7000;
/** The test's own reservation key, used only to clear a lease a failed run left behind. */
const PROBE_KEY = 0x70726f6265n;
/** The peer sends a counter this often; the echoes must go on growing after each fault. */
const PEER_PERIOD_MS = 50;

type Phase = 'precopy' | 'switchover' | 'announce' | 'cleanup';
type Fault = 'kill-src-qemu' | 'kill-dst-qemu' | 'kill-src-agent' | 'kill-dst-agent' | 'kill-server' | 'cut-migration-link' | 'restart-tgtd' | 'restart-ganesha';
type Storage = 'iscsi' | 'nas';

interface Row {
  fault: Fault;
  phase: Phase;
  /** The fault kills the only copy of the VM: afterwards it is crashed on no host. */
  killsTheVm: boolean;
  /** Where the VM's disk lives: vm1 on the iSCSI LUN, vm2 on the NAS datastore. */
  storage?: Storage;
}

const ROWS: Row[] = [
  { fault: 'kill-dst-qemu', phase: 'precopy', killsTheVm: false },
  { fault: 'kill-src-qemu', phase: 'precopy', killsTheVm: true },
  { fault: 'kill-dst-agent', phase: 'precopy', killsTheVm: false },
  { fault: 'kill-server', phase: 'precopy', killsTheVm: false },
  { fault: 'cut-migration-link', phase: 'precopy', killsTheVm: false },
  { fault: 'restart-tgtd', phase: 'precopy', killsTheVm: false },
  { fault: 'kill-src-agent', phase: 'precopy', killsTheVm: true },
  { fault: 'kill-dst-qemu', phase: 'switchover', killsTheVm: false },
  { fault: 'kill-server', phase: 'switchover', killsTheVm: false },
  { fault: 'cut-migration-link', phase: 'switchover', killsTheVm: false },
  { fault: 'restart-tgtd', phase: 'switchover', killsTheVm: false },
  { fault: 'kill-src-qemu', phase: 'announce', killsTheVm: false },
  { fault: 'kill-dst-qemu', phase: 'announce', killsTheVm: true },
  { fault: 'kill-server', phase: 'announce', killsTheVm: false },
  { fault: 'kill-src-qemu', phase: 'cleanup', killsTheVm: false },
  { fault: 'kill-server', phase: 'cleanup', killsTheVm: false },
  { fault: 'restart-ganesha', phase: 'precopy', killsTheVm: false, storage: 'nas' },
  { fault: 'restart-ganesha', phase: 'switchover', killsTheVm: false, storage: 'nas' },
];
const LEAN = ['kill-dst-qemu@precopy', 'kill-server@switchover'];
const storageOf = (r: Row): Storage => r.storage ?? 'iscsi';
const vmOf = (storage: Storage) => (storage === 'iscsi' ? 'vm1' : 'vm2');

/** Audit actions that record how a migration ended. */
const END_ACTIONS = ['migration.completed', 'migration.rolled-back', 'migration.reconciled'];

const rowName = (r: Row) => `${r.fault}@${r.phase}`;
const selected = (() => {
  const wanted = process.env.FAULT_ROWS;
  if (wanted === 'all') return ROWS;
  const names = wanted ? wanted.split(',').map((s) => s.trim()) : LEAN;
  const rows = names.map((n) => ROWS.find((r) => rowName(r) === n));
  if (rows.some((r) => !r)) throw new Error(`FAULT_ROWS names unknown rows; known: ${ROWS.map(rowName).join(', ')}`);
  return rows as Row[];
})();
const REPEAT = Math.max(1, Number(process.env.FAULT_REPEAT ?? 1));

interface RunResult {
  row: string;
  ok: boolean;
  outcome: string;
  runsOn: string;
  acked: number;
  /** What became of the TCP peer's connection. */
  tcp: string;
  seconds: number;
  problem?: string;
}

describe(`fault matrix (hosts in network namespaces, QEMU, tgtd, nfs-ganesha, a TCP peer): ${selected.map(rowName).join(', ')} × ${REPEAT}`, function () {
  this.timeout(0);
  const needsNas = selected.some((r) => storageOf(r) === 'nas');
  let fabric: Fabric | undefined;
  let tgt: Tgt | undefined;
  let ganesha: GaneshaServer | undefined;
  let site: NsSite | undefined;
  let probe: IscsiSession | undefined;
  let peer: TcpPeer | undefined;
  const specs = {} as Record<Storage, VmSpec>;
  /** Serial logs of the current incarnation of each guest (a crash starts a new one). */
  const logs: Record<string, string[]> = { vm1: [], vm2: [] };
  const results: RunResult[] = [];

  /** The disk writer, the echo service on the guest network, one NIC on Motus's switch. */
  const guestSpec = (name: string, disk: string): VmSpec => {
    const base = diskWriterSpec(disk);
    const kit = guestKit();
    return {
      ...base,
      name,
      memoryMiB: 128,
      boot: { kind: 'kernel', kernel: kit.kernel, initrd: kit.initrd, cmdline: kit.cmdline({ extra: ['motus.disk=/dev/vda:40', `motus.ip=${GUEST_CIDR}`, `motus.tcp=server:${ECHO_PORT}`] }) },
      nics: [{ id: 'n0', mac: GUEST_MAC, network: 'guests' }],
    };
  };

  before(async () => {
    requireCommand('qemu-system-x86_64', 'qemu-system-x86');
    requireCommand('setpriv', 'util-linux');
    guestKit();
    fabric = createFabric();
    tgt = await startTgt({ address: BRIDGE_ADDRESS });
    await tgt.addTarget({ iqn: TARGET, lunsMiB: [64] });
    probe = await IscsiSession.login({ portal: tgt.portal, targetIqn: TARGET, initiatorIqn: 'iqn.2026-01.org.motus.test:faults-probe', commandTimeoutMs: 10_000 });
    specs.iscsi = guestSpec('vm1', diskUrl({ portal: tgt.portal, target: TARGET }, 1));
    let nas = '';
    if (needsNas) {
      ganesha = await startGanesha({ address: BRIDGE_ADDRESS });
      const url = `nfs://${BRIDGE_ADDRESS}${ganesha.exportPath}?nfsport=${ganesha.nfsPort}&mountport=${ganesha.mountPort}`;
      const ds = new NasDatastore({ name: 'nas1', url, uid: 0, gid: 0, timeoutMs: 5000 });
      await ds.createVmFolder('vm2');
      await ds.createDiskImage('vm2', 'disk0.img', NAS_DISK_BYTES);
      await ds.close();
      specs.nas = guestSpec('vm2', diskUri(url, NAS_IMAGE));
      nas = `
  - package: '@motus/storage-nas'
    config:
      datastores:
        - name: nas1
          url: '${url}'
      heartbeatMs: 1000
      leaseMs: 15000
      timeoutMs: 5000
      settleMs: 2000
      factsRefreshMs: 1000`;
    }
    site = await startNsSite(
      fabric,
      `  - package: '@motus/hv-qemu'
    config:
      iscsiInitiatorName: 'iqn.2026-01.org.motus:{host}'
  - package: '@motus/storage-iscsi'
    config:
      datastores:
        - name: san1
          portal: '${tgt.portal}'
          target: '${TARGET}'
      leaseCheckMs: 1000
      factsRefreshMs: 1000
      commandTimeoutMs: 5000${nas}
  - package: '@motus/net-virt'
    config:
      networks:
        guests: { vni: ${GUEST_VNI} }
      hosts:
${fabric.hosts.map((h) => `        ${h.name}: { vtep: '${h.address}:${VXLAN_PORT}' }`).join('\n')}
        tcp-peer: { vtep: '${fabric.peer.address}:${VXLAN_PORT}' }
      announceTimeoutMs: 15000`,
      `  maxBandwidthMiBps: 64
  timeoutBaseSeconds: 40
  timeoutSecondsPerGiB: 10
  switchoverWaitSeconds: 15`,
    );
  });

  after(async () => {
    await peer?.stop();
    await site?.stop();
    await probe?.logout().catch(() => undefined);
    await tgt?.stop();
    await ganesha?.stop();
    fabric?.teardown();
  });

  const client = () => site!.client();
  const vm = async (name: string) => (await client().vms()).find((v) => v.name === name);

  /** Whether the disk's lease is free, so a crashed VM may start again. */
  const leaseFree = async (storage: Storage): Promise<boolean> =>
    storage === 'iscsi' ? (await probe!.lun(1).readKeys()).keys.length === 0 : !existsSync(join(ganesha!.dir, lockPathOf(NAS_IMAGE)));

  /** Removes whatever holds the disk's lease (the probe preempts every key; the NAS lock file goes). */
  const clearLease = async (storage: Storage): Promise<void> => {
    if (storage === 'nas') {
      rmSync(join(ganesha!.dir, lockPathOf(NAS_IMAGE)), { force: true });
      return;
    }
    const lun = probe!.lun(1);
    await lun.registerAndIgnore(PROBE_KEY);
    for (const key of (await lun.readKeys()).keys.filter((k) => k !== PROBE_KEY)) await lun.preempt(PROBE_KEY, key, 'WRITE_EXCLUSIVE_REGISTRANTS_ONLY');
    await lun.unregister(PROBE_KEY);
  };

  /** The first `bytes` of the VM's disk as the storage server stored them. */
  const readDisk = async (storage: Storage, bytes: number): Promise<Buffer> => {
    if (storage === 'iscsi') return probe!.lun(1).read(0, bytes / 512);
    const buf = Buffer.alloc(bytes);
    const fd = openSync(join(ganesha!.dir, NAS_IMAGE), 'r');
    try {
      readSync(fd, buf, 0, bytes, 0);
    } finally {
      closeSync(fd);
    }
    return buf;
  };

  /** The row's guest runs and writes, wherever it is; a crashed one is started again on host-a. The other guest is stopped. */
  async function guestWriting(storage: Storage): Promise<string> {
    const name = vmOf(storage);
    const other = vmOf(storage === 'iscsi' ? 'nas' : 'iscsi');
    const otherInfo = await vm(other);
    if (otherInfo && otherInfo.state === 'running') {
      // One guest at a time: the machine is shared, and both answer at the guest address.
      await peer?.stop();
      peer = undefined;
      await client().stopVm(other);
      await waitFor(`${other} to end`, async () => ((await qemuPidsOf(other)).length === 0 ? true : undefined), 60_000, 500);
    }
    let info = await vm(name);
    if (info && info.state !== 'running') {
      // Only after a failed run: a copy left over is stopped, so the next run starts clean.
      for (const pid of await qemuPidsOf(name)) process.kill(pid, 'SIGKILL');
      info = await waitFor(`${name} to be known as crashed`, async () => {
        const v = await vm(name);
        return v && (v.state === 'crashed' || v.state === 'stopped') ? v : undefined;
      }, 60_000, 500);
    }
    if (!info || info.state === 'crashed' || info.state === 'stopped') {
      await peer?.stop();
      peer = undefined;
      await waitFor('the disk lease to be free for a restart', async () => ((await leaseFree(storage)) ? true : undefined), 60_000, 500).catch(async (err: unknown) => {
        // Only after a failed run (already recorded): a lease left behind is cleared so the rows after it still run.
        if (!results.at(-1) || results.at(-1)!.ok) throw err;
        await clearLease(storage);
      });
      info = await client().startVm(specs[storage], 'host-a');
      logs[name] = [];
    }
    if (!logs[name]!.includes(info.serialLog!)) logs[name]!.push(info.serialLog!);
    const before = acknowledgedSeqs(logs[name]!).length;
    await waitFor('the guest to acknowledge 10 more records', () => (acknowledgedSeqs(logs[name]!).length >= before + 10 ? true : undefined), 240_000, 250);
    if (!peer || peer.state.error) {
      await peer?.stop();
      peer = await TcpPeer.connect(fabric!.peer.ns, GUEST_ADDRESS, ECHO_PORT, PEER_PERIOD_MS);
    }
    return info.host;
  }

  async function inject(row: Row, source: string, destination: string, sourcePid: number): Promise<() => Promise<void>> {
    const name = vmOf(storageOf(row));
    switch (row.fault) {
      case 'kill-src-qemu':
        process.kill(sourcePid, 'SIGKILL');
        return async () => undefined;
      case 'kill-dst-qemu': {
        const dst = (await qemuPidsOf(name)).filter((pid) => pid !== sourcePid);
        for (const pid of dst) process.kill(pid, 'SIGKILL');
        return async () => undefined;
      }
      case 'kill-src-agent':
      case 'kill-dst-agent': {
        const host = row.fault === 'kill-src-agent' ? source : destination;
        await site!.killAgent(host);
        return async () => {
          await site!.startAgent(host);
          await site!.ready();
        };
      }
      case 'kill-server':
        await site!.killServer();
        return async () => {
          await sleep(2_000);
          await site!.startServer();
          await site!.ready();
        };
      case 'cut-migration-link':
        fabric!.cut('a-b');
        return async () => fabric!.restore('a-b');
      case 'restart-tgtd':
        await tgt!.restart();
        return async () => undefined;
      case 'restart-ganesha':
        await ganesha!.restart();
        return async () => undefined;
    }
  }

  // The announce phase starts when the destination runs; cleanup (commit, the source
  // process stopped, the cleanup hooks) once net-virt confirmed the vNIC's new place.
  const trigger: Record<Phase, (e: MigrationEvent) => boolean> = {
    precopy: (e) => e.type === 'progress' && e.round >= 1 && e.transferredBytes > 16 * 1024 * 1024,
    switchover: (e) => e.type === 'switchover',
    announce: (e) => e.type === 'resumed',
    cleanup: (e) => e.type === 'announced',
  };

  async function runOnce(row: Row): Promise<RunResult> {
    const started = Date.now();
    const storage = storageOf(row);
    const name = vmOf(storage);
    fabric!.restoreAll();
    // Another ganesha on the machine (other tests) may have taken or dropped our rpcbind
    // entries, through which QEMU finds the server: a restart registers them again.
    if (storage === 'nas' && !(await ganesha!.registered())) await ganesha!.restart();
    // On a loaded machine an agent may miss heartbeats for a while; a run starts once both answer.
    await site!.ready();
    const source = await guestWriting(storage);
    const destination = source === 'host-a' ? 'host-b' : 'host-a';
    const sourcePid = (await vm(name))!.pid!;
    const tcp = peer!;
    const summary = await client().migrate({ vm: name, destination });
    let undo: (() => Promise<void>) | undefined;
    let injected: Promise<void> | undefined;
    const follow = (async () => {
      for await (const event of client().migrationEvents(summary.id)) {
        if (!injected && trigger[row.phase](event)) {
          injected = inject(row, source, destination, sourcePid).then((u) => {
            undo = u;
          });
          if (row.fault === 'kill-server') return;
        }
      }
    })().catch(() => undefined);
    await follow;
    if (!injected) throw new Error(`the migration ended before the ${row.phase} fault could be injected`);
    await injected;
    // A cut link stays cut until the migration has given up on it.
    if (row.fault === 'cut-migration-link') await waitForEnd(summary.id, 180_000);
    await undo!();
    const end = await waitForEnd(summary.id, 240_000);
    const outcome = end.state === 'completed' ? 'completed' : 'rolled back';
    // The fault follows the migration's events, which reach the test late on a loaded
    // machine: a switchover lasts well under a second, so a destination killed "at
    // switchover" may already have resumed (the migration then completes). It was the
    // only up-to-date copy, and the VM is rightly crashed, as in kill-dst-qemu@announce.
    const landedLate = row.fault === 'kill-dst-qemu' && !row.killsTheVm && end.state === 'completed';
    const killsTheVm = row.killsTheVm || landedLate;

    // Exactly one copy runs (none where the fault killed the only one), and the inventory agrees.
    const placed = await waitFor('the VM to settle on one host', async () => {
      const info = await vm(name);
      const pids = await qemuPidsOf(name);
      if (killsTheVm) return info?.state === 'crashed' && pids.length === 0 ? (landedLate ? 'nowhere (crashed: the destination had resumed)' : 'nowhere (crashed)') : undefined;
      return info?.state === 'running' && pids.length === 1 && pids[0] === info.pid ? info.host : undefined;
    }, 120_000, 500).catch(async (err: unknown) => {
      const info = await vm(name);
      throw new Error(`${(err as Error).message}: inventory ${info?.host}/${info?.state} pid ${info?.pid}, QEMU pids ${(await qemuPidsOf(name)).join(',')}`);
    });
    let connection: string;
    if (!killsTheVm) {
      const info = (await vm(name))!;
      if (!logs[name]!.includes(info.serialLog!)) logs[name]!.push(info.serialLog!);
      const before = acknowledgedSeqs(logs[name]!).length;
      await waitFor('the guest to go on writing', () => (acknowledgedSeqs(logs[name]!).length >= before + 5 ? true : undefined), 120_000, 250);
      // The one connection the peer opened before the fault goes on, every byte echoed once and in order.
      const echoed = tcp.state.echoed;
      await waitFor('the TCP peer to get 40 more echoes on its connection', () => {
        if (tcp.state.error) throw new Error(`the TCP connection to the guest broke: ${tcp.state.error}`);
        return tcp.state.echoed >= echoed + 40 ? true : undefined;
      }, 180_000, 250);
      connection = 'kept, every byte echoed once';
    } else {
      // The only copy died: so did the connection's far end. The peer is stopped; the next run starts another.
      connection = `died with the VM (${tcp.state.error ?? 'no more echoes'})`;
      await tcp.stop();
      peer = undefined;
    }

    // Every acknowledged record is on the datastore.
    const acks = acknowledgedSeqs(logs[name]!);
    acks.forEach((seq, i) => expect(seq, 'acknowledged in order, none skipped').to.equal(i + 1));
    const image = await readDisk(storage, (acks.at(-1)! + 1) * DISK_RECORD_BYTES);
    const problems = acks.flatMap((seq) => diskRecordProblem(image.subarray(seq * DISK_RECORD_BYTES, (seq + 1) * DISK_RECORD_BYTES), seq) ?? []);
    expect(problems, 'acknowledged records missing from the datastore').to.deep.equal([]);

    // The audit trail says what happened to this task.
    const audit = await waitFor('the audit record of the outcome', async () => {
      const records = (await client().audit({ vm: name })).filter((r) => r.task === summary.id);
      return records.some((r) => END_ACTIONS.includes(r.action)) ? records : undefined;
    }, 30_000, 500);
    const ended = audit.find((r) => END_ACTIONS.includes(r.action))!;
    expect(ended.action === 'migration.completed' || (ended.action === 'migration.reconciled' && ended.outcome === 'completed'), `audit ${ended.action} ${ended.outcome}`).to.equal(outcome === 'completed');
    return { row: rowName(row), ok: true, outcome, runsOn: placed, acked: acks.length, tcp: connection, seconds: Math.round((Date.now() - started) / 1000) };
  }

  async function waitForEnd(id: string, timeoutMs: number): Promise<MigrationSummary> {
    return waitFor(`migration ${id} to end`, async () => {
      const m = await client().migration(id).catch(() => undefined);
      return m && m.state !== 'running' && m.state !== 'queued' ? m : undefined;
    }, timeoutMs, 500);
  }
  // Repetition by repetition, so a run cut short still covers every row.
  for (let rep = 1; rep <= REPEAT; rep++) {
    for (const row of selected) {
      it(`${rowName(row)} #${rep}: ends completed or rolled back, one copy runs (none if it killed the only one), every acknowledged record is on the datastore, the TCP peer's connection survives with it, the audit says so`, async () => {
        const started = Date.now();
        try {
          const result = await runOnce(row);
          results.push(result);
          if (process.env.FAULT_REPORT === '1') writeReport(results);
          console.log(`      ${result.row}: ${result.outcome}, runs on ${result.runsOn}, ${result.acked} records checked, TCP ${result.tcp}, ${result.seconds} s`);
        } catch (err) {
          results.push({ row: rowName(row), ok: false, outcome: 'error', runsOn: '?', acked: 0, tcp: '?', seconds: Math.round((Date.now() - started) / 1000), problem: (err as Error).message.split('\n')[0] });
          if (process.env.FAULT_REPORT === '1') writeReport(results);
          throw err;
        }
      });
    }
  }
});

/** Rewrites the results table between the markers of docs/reliability.md. */
function writeReport(results: RunResult[]): void {
  const path = join(repoRoot, 'docs', 'reliability.md');
  const doc = readFileSync(path, 'utf8');
  const rows = [...new Set(results.map((r) => r.row))].map((row) => {
    const runs = results.filter((r) => r.row === row);
    const outcomes = [...new Set(runs.filter((r) => r.ok).map((r) => r.outcome))].join(' / ') || '—';
    const where = [...new Set(runs.filter((r) => r.ok).map((r) => r.runsOn))].join(' / ') || '—';
    const tcp = [...new Set(runs.filter((r) => r.ok).map((r) => r.tcp))].join(' / ') || '—';
    const problems = runs.filter((r) => !r.ok).map((r) => r.problem).join('; ');
    return `| \`${row}\` | ${runs.filter((r) => r.ok).length}/${runs.length} | ${outcomes} | ${where} | ${tcp} | ${Math.max(...runs.map((r) => r.seconds))} | ${problems || '—'} |`;
  });
  const table = [
    `Last run: ${new Date().toISOString().slice(0, 16)}Z, ${results.length} runs (\`FAULT_ROWS=${process.env.FAULT_ROWS ?? 'lean'} FAULT_REPEAT=${REPEAT}\`).`,
    '',
    '| row | passed | task ended | VM runs on | TCP peer\'s connection | slowest run (s) | failures |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
  ].join('\n');
  const begin = '<!-- fault-matrix:begin -->';
  const end = '<!-- fault-matrix:end -->';
  writeFileSync(path, `${doc.slice(0, doc.indexOf(begin) + begin.length)}\n${table}\n${doc.slice(doc.indexOf(end))}`);
}
