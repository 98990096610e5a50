/**
 * A guest whose disk is a LUN of an iSCSI datastore (a real tgtd) writes
 * numbered durable records while it moves A → B → A on an all-in-one site.
 * Afterwards every record it reported acknowledged is read back from the LUN
 * with our own initiator; the LUN's registered keys (its owner) are watched
 * throughout.
 */
import { expect } from 'chai';
import { MotusError, type MigrationEvent, type VmSpec } from '@motus/sdk';
import { IscsiSession, diskUrl, keyHex, reservationKey, type IscsiDatastoreView, type IscsiHostFacts } from '@motus/storage-iscsi';
import {
  acknowledgedSeqs as acknowledged,
  DISK_RECORD_BYTES as RECORD,
  diskRecordProblem as recordProblem,
  diskWriterSiteYaml,
  destinationFreezer,
  freezeAtSwitchover,
  diskWriterSpec,
  migrateAndFollow,
  requireGuestKitSite,
  vmInfoOf,
  waitFor,
  watchChanges,
} from '../../support/index.js';
import { pluginFactsByHost, qemuPidsOf, startSite, type TestSite } from '../../support/site.js';
import { startTgt, type Tgt } from '../support/tgt.js';

const LUN_MIB = 32;
const TARGET = 'iqn.2026-01.org.motus.test:san1';
const PLUGIN = '@motus/storage-iscsi';

function siteYaml(tgt: Tgt): string {
  return diskWriterSiteYaml(
    'iscsi-e2e',
    `
  - package: '@motus/hv-qemu'
    config:
      iscsiInitiatorName: 'iqn.2026-01.org.motus:{host}'
  - package: '${PLUGIN}'
    config:
      datastores:
        - name: san1
          portal: '${tgt.portal}'
          target: '${TARGET}'
          hosts: [host-a, host-b]
      leaseCheckMs: 1000
      factsRefreshMs: 1000
      commandTimeoutMs: 5000
`,
  );
}

const KEY = { 'host-a': keyHex(reservationKey('host-a')), 'host-b': keyHex(reservationKey('host-b')) } as const;
const nameOf = (key: bigint): string => Object.entries(KEY).find(([, k]) => k === keyHex(key))?.[0] ?? keyHex(key);

describe('iSCSI datastore: a writing guest on a LUN migrates A → B → A (all-in-one site, QEMU, tgtd)', function () {
  this.timeout(900_000);
  let tgt: Tgt;
  let site: TestSite | undefined;
  let probe: IscsiSession;
  let spec: VmSpec;
  let naa: string;
  const serialLogs: string[] = [];

  const vmInfo = (name: string) => vmInfoOf(site!.client, name);
  const hostsFacts = () => pluginFactsByHost<IscsiHostFacts>(site!.client, PLUGIN);
  /** Who is registered on the LUN, as the target itself says (READ KEYS through the test's own session). */
  const owners = async (): Promise<string> => {
    const { keys } = await probe.lun(1).readKeys();
    return [...new Set(keys)].map(nameOf).sort().join('+') || '(none)';
  };

  before(async () => {
    requireGuestKitSite();
    tgt = await startTgt();
    await tgt.addTarget({ iqn: TARGET, lunsMiB: [LUN_MIB] });
    probe = await IscsiSession.login({ portal: tgt.portal, targetIqn: TARGET, initiatorIqn: 'iqn.2026-01.org.motus.test:probe', commandTimeoutMs: 10_000 });
    naa = (await probe.lun(1).deviceIdentification()).naa!;
    spec = diskWriterSpec(diskUrl({ portal: tgt.portal, target: TARGET }, 1));
    site = await startSite(siteYaml(tgt));
  });

  after(async () => {
    await site?.stop();
    await probe?.logout().catch(() => undefined);
    await tgt?.stop();
  });

  it('reports the LUN (NAA id, size) on host-a and host-b; host-c does not see san1', async () => {
    const facts = await waitFor('scanned datastores', async () => {
      const f = await hostsFacts();
      return f.get('host-a')?.datastores[0]?.accessible && f.get('host-b')?.datastores[0]?.accessible ? f : undefined;
    }, 30_000, 250);
    for (const host of ['host-a', 'host-b'] as const) {
      const ds = facts.get(host)!.datastores[0]!;
      expect(ds).to.include({ name: 'san1', target: TARGET, accessible: true, capacityBytes: LUN_MIB << 20, freeBytes: LUN_MIB << 20 });
      expect(ds.luns).to.have.length(1);
      expect(ds.luns[0]).to.include({ lun: 1, naa, bytes: LUN_MIB << 20, blockSize: 512 });
      expect(facts.get(host)!.key).to.equal(KEY[host]);
    }
    expect(facts.get('host-c')!.datastores).to.deep.equal([]);
    expect(facts.get('host-c')!.notVisible).to.deep.equal(['san1']);
  });

  it('starts the guest on host-a, which then owns the LUN', async () => {
    await site!.client.startVm(spec, 'host-a');
    const vm = await vmInfo('vm1');
    serialLogs.push(vm.serialLog!);
    await waitFor('20 acknowledged disk records', () => (acknowledged(serialLogs).length >= 20 ? true : undefined), 180_000, 250);
    expect(await owners()).to.equal('host-a');
    // QEMU's own session uses the name the site gives host-a (tgt lists each I_T nexus's initiator).
    const nexuses = [...(await tgt.tgtadm(['--lld', 'iscsi', '--mode', 'target', '--op', 'show'])).matchAll(/Initiator: (\S+)/g)].map((m) => m[1]);
    expect(nexuses.filter((n) => n === 'iqn.2026-01.org.motus:host-a'), nexuses.join(', ')).to.have.length(2);
    const facts = await waitFor('facts naming the lease', async () => {
      const f = await hostsFacts();
      return f.get('host-a')?.leases.length === 1 ? f : undefined;
    }, 15_000, 250);
    expect(facts.get('host-a')!.leases[0]).to.include({ vm: 'vm1', disk: 'disk0', datastore: 'san1', lun: 1, naa });
    expect(facts.get('host-b')!.leases).to.deep.equal([]);
    await waitFor('the owner in the LUN facts', async () => ((await hostsFacts()).get('host-b')?.datastores[0]?.luns[0]?.owner === 'host-a' ? true : undefined), 15_000, 250);
    // The operator's view: every LUN with its size and owner, from the CLI.
    const show = await site!.cli('datastore', 'show', '--json');
    expect(show.code, show.stderr).to.equal(0);
    const [san1] = JSON.parse(show.stdout) as IscsiDatastoreView[];
    expect(san1).to.deep.include({ name: 'san1', target: TARGET, capacityBytes: LUN_MIB << 20, freeBytes: 0 });
    expect(san1!.seenBy.sort()).to.deep.equal(['host-a', 'host-b']);
    expect(san1!.luns).to.have.length(1);
    expect(san1!.luns[0]).to.deep.include({ lun: 1, naa, bytes: LUN_MIB << 20, owner: 'host-a', keys: [KEY['host-a']] });
    const table = (await site!.cli('datastore', 'show', 'san1')).stdout;
    expect(table).to.match(new RegExp(`san1\\s+1\\s+${naa.replace(/\./g, '\\.')}\\s+32(\\.0)? MiB\\s+host-a`));
  });

  it('refuses a second VM on the same LUN on host-b while host-a owns it', async () => {
    const err = await site!.client.startVm({ ...spec, name: 'vm1-twin' }, 'host-b').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err, 'the twin must not start').to.be.instanceOf(MotusError);
    expect((err as MotusError).message).to.include('host-a');
    expect(JSON.stringify((err as MotusError).toJSON())).to.include('MOTUS_E_ISCSI_LUN_HELD');
    console.log(`      twin refused: ${(err as MotusError).message}`);
    expect(await qemuPidsOf('vm1-twin')).to.deep.equal([]);
    expect(await owners()).to.equal('host-a');
  });

  it('vetoes a migration to host-c, naming the LUN and the host', async () => {
    const err = await site!.client.migrate({ vm: 'vm1', destination: 'host-c' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(MotusError);
    expect((err as MotusError).code).to.equal('MOTUS_E_MIGRATION_VETOED');
    expect((err as MotusError).message).to.include('host-c').and.include('LUN 1').and.include(naa);
    console.log(`      veto: ${(err as MotusError).message}`);
    expect((await vmInfo('vm1')).host).to.equal('host-a');
  });

  for (const [from, to] of [['host-a', 'host-b'], ['host-b', 'host-a']] as const) {
    it(`migrates ${from} → ${to} while the guest writes; the LUN passes from ${from} to ${to}`, async () => {
      const before = acknowledged(serialLogs).length;
      const watcher = watchChanges(owners, 10);
      const seen = watcher.seen;
      const events = await migrateAndFollow(site!.client, 'vm1', to);
      await watcher.stop();
      const last = events.at(-1)!;
      expect(last.type, JSON.stringify(events.filter((e) => e.type !== 'progress'))).to.equal('completed');
      const completed = last as Extract<MigrationEvent, { type: 'completed' }>;
      const vm = await vmInfo('vm1');
      expect([vm.host, vm.state]).to.deep.equal([to, 'running']);
      serialLogs.push(vm.serialLog!);
      // Never two owners; the only states are from, nobody (between give and take), to.
      const allowed = [from, '(none)', to];
      for (const o of seen) expect(allowed, `owners ${seen.join(' → ')}`).to.include(o);
      expect(seen[0]).to.equal(from);
      expect(seen.at(-1)).to.equal(to);
      expect(await owners()).to.equal(to);
      const facts = await waitFor('facts after the move', async () => {
        const f = await hostsFacts();
        return f.get(to)?.leases.length === 1 && f.get(from)?.leases.length === 0 && (f.get(from)?.releases.length ?? 0) > 0 ? f : undefined;
      }, 15_000, 250);
      const taken = facts.get(to)!.leases[0]!;
      const given = facts.get(from)!.releases.at(-1)!;
      await waitFor('the guest to go on writing on the destination', () => (acknowledged(serialLogs).length >= before + 40 ? true : undefined), 180_000, 250);
      console.log(
        `      ${from} → ${to}: downtime ${completed.downtimeMs} ms, LUN given in ${given.ms} ms (${given.commands} commands) + taken in ${taken.acquireMs} ms (${taken.commands} commands), total ${completed.totalTimeMs} ms; owners ${seen.join(' → ')}`,
      );
    });
  }

  it('rolls back after the LUN moved: the frozen destination gives it back and the source resumes writing', async () => {
    const source = await vmInfo('vm1');
    expect(source.host).to.equal('host-a');
    const freezer = destinationFreezer('vm1', source.pid!);
    // Freeze the destination QEMU as soon as host-b owns the LUN: the final state
    // cannot arrive, and the migration times out after the switchover moved the LUN.
    const watcher = watchChanges(owners, 2, async (owner) => (owner === 'host-b' ? freezer.freeze() : undefined));
    const seen = watcher.seen;
    const before = acknowledged(serialLogs).at(-1)!;
    const events = await migrateAndFollow(site!.client, 'vm1', 'host-b', freezeAtSwitchover(freezer));
    await watcher.stop();
    const types = events.map((e) => e.type).filter((t) => t !== 'progress');
    expect(freezer.pid, `the destination was frozen (owners ${seen.join(' → ')})`).to.be.a('number');
    expect(types.slice(-2), types.join(',')).to.deep.equal(['failed', 'rolled-back']);
    expect(types).to.include('switchover');
    const vm = await vmInfo('vm1');
    expect([vm.host, vm.state]).to.deep.equal(['host-a', 'running']);
    expect(await qemuPidsOf('vm1'), 'the frozen destination was stopped').to.deep.equal([source.pid]);
    expect(await owners()).to.equal('host-a');
    for (const o of seen) expect(['host-a', '(none)', 'host-b'], `owners ${seen.join(' → ')}`).to.include(o);
    expect(seen.filter((o) => o !== '(none)'), `owners ${seen.join(' → ')}`).to.deep.equal(['host-a', 'host-b', 'host-a']);
    await waitFor('the guest to go on writing on host-a', () => (acknowledged(serialLogs).at(-1)! >= before + 20 ? true : undefined), 180_000, 250);
    const failed = events.find((e) => e.type === 'failed') as Extract<MigrationEvent, { type: 'failed' }>;
    console.log(
      `      rollback in ${failed.phase}: failed → rolled-back ${Date.parse(events.at(-1)!.at) - Date.parse(failed.at)} ms; owners ${seen.join(' → ')}; ${failed.error.message}`,
    );
  });

  it('has every acknowledged record on the LUN, read back with our initiator', async () => {
    await site!.client.stopVm('vm1');
    await waitFor('vm1 to end', async () => ((await qemuPidsOf('vm1')).length === 0 ? true : undefined), 60_000);
    await waitFor('the LUN to be released', async () => ((await owners()) === '(none)' ? true : undefined), 10_000);
    const acks = acknowledged(serialLogs);
    expect(acks.length).to.be.greaterThan(100);
    acks.forEach((seq, i) => expect(seq, 'acknowledged in order, none skipped').to.equal(i + 1));
    const lun = probe.lun(1);
    const blocksPerRecord = RECORD / 512;
    const last = acks.at(-1)!;
    const image = await lun.read(0, (last + 1) * blocksPerRecord);
    const problems = acks.flatMap((seq) => recordProblem(image.subarray(seq * RECORD, (seq + 1) * RECORD), seq) ?? []);
    expect(problems).to.deep.equal([]);
    console.log(`      ${acks.length} acknowledged records verified on the LUN`);
  });

  it('stops the guest at once when its host loses the LUN (QEMU killed, loss in the facts)', async () => {
    await site!.client.startVm(spec, 'host-b');
    const vm = await vmInfo('vm1');
    const log = [vm.serialLog!];
    await waitFor('records on host-b', () => (acknowledged(log).length >= 5 ? true : undefined), 180_000, 250);
    expect(await owners()).to.equal('host-b');
    // An operator preempts host-b's registration while its VM runs: refused, then forced.
    const refused = await site!.cli('datastore', 'preempt', 'san1', '1', '--host', 'host-b');
    expect(refused.code).to.not.equal(0);
    expect(refused.stderr).to.contain('MOTUS_E_ISCSI_LUN_HELD').and.contain('host-b');
    expect(await owners()).to.equal('host-b');
    const key = 0x7e57n;
    const lun = probe.lun(1);
    const t = performance.now();
    const forced = await site!.cli('datastore', 'preempt', 'san1', '1', '--host', 'host-b', '--force', '--json');
    expect(forced.code, forced.stderr).to.equal(0);
    expect(JSON.parse(forced.stdout)).to.deep.include({ removed: ['host-b'], after: [], by: 'host-a' });
    await waitFor('the QEMU of vm1 to be killed', async () => ((await qemuPidsOf('vm1')).length === 0 ? true : undefined), 20_000, 100).catch((err: unknown) => {
      const log = site!.output().split('\n').filter((l) => /LUN|iSCSI|lease/.test(l)).slice(-20).join('\n');
      throw new Error(`${(err as Error).message}; keys ${keyHex(key)} preempted host-b; the site's iSCSI log lines:\n${log}`);
    });
    const fencedMs = Math.round(performance.now() - t);
    const facts = await waitFor('the loss in host-b facts', async () => {
      const f = (await hostsFacts()).get('host-b');
      return f && f.lost.length > 0 ? f : undefined;
    }, 15_000, 250);
    expect(facts.lost.at(-1)).to.include({ vm: 'vm1', disk: 'disk0', datastore: 'san1', lun: 1 });
    expect(facts.lost.at(-1)!.fenced).to.deep.equal([vm.pid]);
    expect(facts.leases).to.deep.equal([]);
    await waitFor('vm1 to be marked crashed', async () => ((await vmInfo('vm1')).state === 'crashed' ? true : undefined), 15_000, 250);
    // A registration nobody will give back (a host gone for good, here the test's): cleared by an admin.
    await lun.registerAndIgnore(key);
    await waitFor('the stray key in the operator view', async () => {
      const [ds] = JSON.parse((await site!.cli('datastore', 'show', '--json')).stdout) as IscsiDatastoreView[];
      return ds?.luns[0]?.keys.includes(keyHex(key)) && ds.luns[0].owner === undefined ? true : undefined;
    }, 15_000, 250);
    const cleared = await site!.cli('datastore', 'preempt', 'san1', '1', '--all', '--json');
    expect(cleared.code, cleared.stderr).to.equal(0);
    expect(JSON.parse(cleared.stdout)).to.deep.include({ removed: [keyHex(key)], after: [] });
    expect(await owners()).to.equal('(none)');
    expect((await site!.client.audit({ user: 'admin' })).filter((r) => r.action === 'plugin.call').length).to.equal(2);
    console.log(`      registration preempted by motus datastore preempt → QEMU killed in ${fencedMs} ms (lease check every 1000 ms)`);
  });
});
