/**
 * The fault matrix: a real guest writing numbered durable records to an iSCSI LUN
 * (a real tgtd) migrates between two hosts that live in their own network
 * namespaces, and at a chosen phase of the migration one thing is made to fail:
 * a QEMU, an agent or the server is killed with SIGKILL, the migration link is cut,
 * the iSCSI target is restarted. After each run: the migration ended (completed or
 * rolled back, never stuck), the VM runs on exactly one host (or, where the fault
 * killed its only copy, on none and is `crashed`), every record the guest saw
 * acknowledged is on the LUN, and the audit trail has the outcome.
 *
 * FAULT_ROWS (comma-separated row names, or `all`) and FAULT_REPEAT pick the runs;
 * without them the lean subset of `npm test` runs once. FAULT_REPORT=1 (npm run
 * test:faults) rewrites the results table in docs/reliability.md after every run.
 */
import { expect } from 'chai';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MigrationEvent, MigrationSummary, VmSpec } from '@motus/sdk';
import { IscsiSession, diskUrl } from '@motus/storage-iscsi';
import { DISK_RECORD_BYTES, acknowledgedSeqs, diskRecordProblem, diskWriterSpec, guestKit, qemuPidsOf, repoRoot, requireCommand, sleep, waitFor } from '../../support/index.js';
import { startTgt, type Tgt } from '../../storage-iscsi/support/tgt.js';
import { BRIDGE_ADDRESS, createFabric, type Fabric } from '../support/netns.js';
import { startNsSite, type NsSite } from '../support/ns-site.js';

const TARGET = 'iqn.2026-01.org.motus.test:faults';

type Phase = 'precopy' | 'switchover' | 'announce';
type Fault = 'kill-src-qemu' | 'kill-dst-qemu' | 'kill-src-agent' | 'kill-dst-agent' | 'kill-server' | 'cut-migration-link' | 'restart-tgtd';

interface Row {
  fault: Fault;
  phase: Phase;
  /** The fault kills the only copy of the VM: afterwards it is crashed on no host. */
  killsTheVm: boolean;
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
];
const LEAN = ['kill-dst-qemu@precopy', 'kill-server@switchover'];

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
  seconds: number;
  problem?: string;
}

describe(`fault matrix (hosts in network namespaces, QEMU, tgtd): ${selected.map(rowName).join(', ')} × ${REPEAT}`, function () {
  this.timeout(0);
  let fabric: Fabric | undefined;
  let tgt: Tgt | undefined;
  let site: NsSite | undefined;
  let probe: IscsiSession | undefined;
  let spec: VmSpec;
  /** Serial logs of the current incarnation of the guest (a crash starts a new one). */
  let logs: string[] = [];
  const results: RunResult[] = [];

  before(async () => {
    requireCommand('qemu-system-x86_64', 'qemu-system-x86');
    requireCommand('setpriv', 'util-linux');
    guestKit();
    fabric = createFabric();
    tgt = await startTgt({ address: BRIDGE_ADDRESS });
    await tgt.addTarget({ iqn: TARGET, lunsMiB: [64] });
    probe = await IscsiSession.login({ portal: tgt.portal, targetIqn: TARGET, initiatorIqn: 'iqn.2026-01.org.motus.test:faults-probe', commandTimeoutMs: 10_000 });
    spec = diskWriterSpec(diskUrl({ portal: tgt.portal, target: TARGET }, 1));
    spec.memoryMiB = 128;
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
      commandTimeoutMs: 5000`,
      `  maxBandwidthMiBps: 64
  timeoutBaseSeconds: 40
  timeoutSecondsPerGiB: 10
  switchoverWaitSeconds: 15`,
    );
  });

  after(async () => {
    await site?.stop();
    await probe?.logout().catch(() => undefined);
    await tgt?.stop();
    fabric?.teardown();
  });

  const client = () => site!.client();
  const vm = async () => (await client().vms()).find((v) => v.name === 'vm1');

  /** The guest runs and writes, wherever it is; a crashed one is started again on host-a. */
  async function guestWriting(): Promise<string> {
    let info = await vm();
    if (info && info.state !== 'running') {
      // Only after a failed run: a copy left over is stopped, so the next run starts clean.
      for (const pid of await qemuPidsOf('vm1')) process.kill(pid, 'SIGKILL');
      info = await waitFor('the VM to be known as crashed', async () => {
        const v = await vm();
        return v && (v.state === 'crashed' || v.state === 'stopped') ? v : undefined;
      }, 60_000, 500);
    }
    if (!info || info.state === 'crashed' || info.state === 'stopped') {
      await waitFor('the LUN to be free for a restart', async () => {
        const { keys } = await probe!.lun(1).readKeys();
        return keys.length === 0 ? true : undefined;
      }, 60_000, 500);
      info = await client().startVm(spec, 'host-a');
      logs = [];
    }
    if (!logs.includes(info.serialLog!)) logs.push(info.serialLog!);
    const before = acknowledgedSeqs(logs).length;
    await waitFor('the guest to acknowledge 10 more records', () => (acknowledgedSeqs(logs).length >= before + 10 ? true : undefined), 240_000, 250);
    return info.host;
  }

  async function inject(row: Row, source: string, destination: string, sourcePid: number): Promise<() => Promise<void>> {
    switch (row.fault) {
      case 'kill-src-qemu':
        process.kill(sourcePid, 'SIGKILL');
        return async () => undefined;
      case 'kill-dst-qemu': {
        const dst = (await qemuPidsOf('vm1')).filter((pid) => pid !== sourcePid);
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
    }
  }

  const trigger: Record<Phase, (e: MigrationEvent) => boolean> = {
    precopy: (e) => e.type === 'progress' && e.round >= 1 && e.transferredBytes > 16 * 1024 * 1024,
    switchover: (e) => e.type === 'switchover',
    announce: (e) => e.type === 'resumed',
  };

  async function runOnce(row: Row): Promise<RunResult> {
    const started = Date.now();
    fabric!.restoreAll();
    // On a loaded machine an agent may miss heartbeats for a while; a run starts once both answer.
    await site!.ready();
    const source = await guestWriting();
    const destination = source === 'host-a' ? 'host-b' : 'host-a';
    const sourcePid = (await vm())!.pid!;
    const summary = await client().migrate({ vm: 'vm1', destination });
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

    // Exactly one copy runs (none where the fault killed the only one), and the inventory agrees.
    const placed = await waitFor('the VM to settle on one host', async () => {
      const info = await vm();
      const pids = await qemuPidsOf('vm1');
      if (row.killsTheVm) return info?.state === 'crashed' && pids.length === 0 ? 'nowhere (crashed)' : undefined;
      return info?.state === 'running' && pids.length === 1 && pids[0] === info.pid ? info.host : undefined;
    }, 120_000, 500).catch(async (err: unknown) => {
      const info = await vm();
      throw new Error(`${(err as Error).message}: inventory ${info?.host}/${info?.state} pid ${info?.pid}, QEMU pids ${(await qemuPidsOf('vm1')).join(',')}`);
    });
    if (!row.killsTheVm) {
      const info = (await vm())!;
      if (!logs.includes(info.serialLog!)) logs.push(info.serialLog!);
      const before = acknowledgedSeqs(logs).length;
      await waitFor('the guest to go on writing', () => (acknowledgedSeqs(logs).length >= before + 5 ? true : undefined), 120_000, 250);
    }

    // Every acknowledged record is on the LUN.
    const acks = acknowledgedSeqs(logs);
    acks.forEach((seq, i) => expect(seq, 'acknowledged in order, none skipped').to.equal(i + 1));
    const blocksPerRecord = DISK_RECORD_BYTES / 512;
    const image = await probe!.lun(1).read(0, (acks.at(-1)! + 1) * blocksPerRecord);
    const problems = acks.flatMap((seq) => diskRecordProblem(image.subarray(seq * DISK_RECORD_BYTES, (seq + 1) * DISK_RECORD_BYTES), seq) ?? []);
    expect(problems, 'acknowledged records missing from the LUN').to.deep.equal([]);

    // The audit trail says what happened to this task.
    const audit = await waitFor('the audit record of the outcome', async () => {
      const records = (await client().audit({ vm: 'vm1' })).filter((r) => r.task === summary.id);
      return records.some((r) => END_ACTIONS.includes(r.action)) ? records : undefined;
    }, 30_000, 500);
    const ended = audit.find((r) => END_ACTIONS.includes(r.action))!;
    expect(ended.action === 'migration.completed' || (ended.action === 'migration.reconciled' && ended.outcome === 'completed'), `audit ${ended.action} ${ended.outcome}`).to.equal(outcome === 'completed');
    return { row: rowName(row), ok: true, outcome, runsOn: placed, acked: acks.length, seconds: Math.round((Date.now() - started) / 1000) };
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
      it(`${rowName(row)} #${rep}: ends completed or rolled back, one copy runs (none if it killed the only one), every acknowledged record is on the LUN, the audit says so`, async () => {
        const started = Date.now();
        try {
          const result = await runOnce(row);
          results.push(result);
          if (process.env.FAULT_REPORT === '1') writeReport(results);
          console.log(`      ${result.row}: ${result.outcome}, runs on ${result.runsOn}, ${result.acked} records checked, ${result.seconds} s`);
        } catch (err) {
          results.push({ row: rowName(row), ok: false, outcome: 'error', runsOn: '?', acked: 0, seconds: Math.round((Date.now() - started) / 1000), problem: (err as Error).message.split('\n')[0] });
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
    const problems = runs.filter((r) => !r.ok).map((r) => r.problem).join('; ');
    return `| \`${row}\` | ${runs.filter((r) => r.ok).length}/${runs.length} | ${outcomes} | ${where} | ${Math.max(...runs.map((r) => r.seconds))} | ${problems || '—'} |`;
  });
  const table = [
    `Last run: ${new Date().toISOString().slice(0, 16)}Z, ${results.length} runs (\`FAULT_ROWS=${process.env.FAULT_ROWS ?? 'lean'} FAULT_REPEAT=${REPEAT}\`).`,
    '',
    '| row | passed | task ended | VM runs on | slowest run (s) | failures |',
    '| --- | --- | --- | --- | --- | --- |',
    ...rows,
  ].join('\n');
  const begin = '<!-- fault-matrix:begin -->';
  const end = '<!-- fault-matrix:end -->';
  writeFileSync(path, `${doc.slice(0, doc.indexOf(begin) + begin.length)}\n${table}\n${doc.slice(doc.indexOf(end))}`);
}
