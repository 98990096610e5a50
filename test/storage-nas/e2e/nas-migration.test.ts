/**
 * A guest whose disk lives on a NAS datastore (a real nfs-ganesha) writes
 * numbered durable records while it moves A → B → A on an all-in-one site.
 * Afterwards every record it reported acknowledged is read back from the server
 * with our own NFS client; the lock file is watched throughout.
 */
import { expect } from 'chai';
import { MotusError, type MigrationEvent, type VmSpec } from '@motus/sdk';
import { NasDatastore, NfsClient, diskUri, lockPathOf, readLock, type NasHostFacts } from '@motus/storage-nas';
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
  sleep,
  vmInfoOf,
  waitFor,
  watchChanges,
} from '../../support/index.js';
import { pluginFactsByHost, qemuPidsOf, startSite, type TestSite } from '../../support/site.js';
import { startGanesha, type GaneshaServer } from '../support/ganesha.js';

const DISK_BYTES = 32 * 1024 * 1024;
const IMAGE = 'vm1/disk0.img';
const LOCK = lockPathOf(IMAGE);

function siteYaml(g: GaneshaServer): string {
  return diskWriterSiteYaml(
    'nas-e2e',
    `
  - package: '@motus/hv-qemu'
  - package: '@motus/storage-nas'
    config:
      datastores:
        - name: nas1
          url: 'nfs://127.0.0.1${g.exportPath}?nfsport=${g.nfsPort}&mountport=${g.mountPort}'
          hosts: [host-a, host-b]
      heartbeatMs: 1000
      leaseMs: 5000
      timeoutMs: 5000
      settleMs: 2000
      factsRefreshMs: 1000
`,
  );
}

describe('NAS datastore: a writing guest migrates A → B → A (all-in-one site, QEMU, nfs-ganesha)', function () {
  this.timeout(900_000);
  let ganesha: GaneshaServer;
  let site: TestSite | undefined;
  let nfs: NfsClient;
  let spec: VmSpec;
  const serialLogs: string[] = [];

  const vmInfo = (name: string) => vmInfoOf(site!.client, name);
  const hostsFacts = () => pluginFactsByHost<NasHostFacts>(site!.client, '@motus/storage-nas');
  /** The lock's owner, `new<-old` while it is granted but not yet adopted. */
  const lockOwner = async (): Promise<string> => {
    const l = await readLock(nfs, LOCK);
    return l ? (l.grantedBy ? `${l.owner}<-${l.grantedBy}` : l.owner) : '(none)';
  };

  before(async () => {
    requireGuestKitSite();
    ganesha = await startGanesha();
    const url = `nfs://127.0.0.1${ganesha.exportPath}?nfsport=${ganesha.nfsPort}&mountport=${ganesha.mountPort}`;
    const ds = new NasDatastore({ name: 'nas1', url, uid: 0, gid: 0, timeoutMs: 5000 });
    await ds.createVmFolder('vm1');
    await ds.createDiskImage('vm1', 'disk0.img', DISK_BYTES);
    await ds.close();
    nfs = await NfsClient.connect({ host: '127.0.0.1', export: ganesha.exportPath, port: ganesha.nfsPort, mountPort: ganesha.mountPort, uid: 0, gid: 0, timeoutMs: 5000 });
    spec = diskWriterSpec(diskUri(url, IMAGE));
    site = await startSite(siteYaml(ganesha));
  });

  after(async () => {
    await site?.stop();
    await nfs?.close().catch(() => undefined);
    await ganesha?.stop();
  });

  it('starts the guest on host-a with its disk lock; host-c reports that it does not mount nas1', async () => {
    await site!.client.startVm(spec, 'host-a');
    const vm = await vmInfo('vm1');
    serialLogs.push(vm.serialLog!);
    await waitFor('20 acknowledged disk records', () => (acknowledged(serialLogs).length >= 20 ? true : undefined), 120_000, 250);
    const lock = await readLock(nfs, LOCK);
    expect(lock?.owner).to.equal('host-a');
    const facts = await waitFor('facts naming the lock', async () => {
      const f = await hostsFacts();
      return f.get('host-a')?.locks.length === 1 && f.get('host-c')?.notMounted ? f : undefined;
    }, 15_000, 250);
    expect(facts.get('host-a')!.locks[0]).to.include({ vm: 'vm1', disk: 'disk0', datastore: 'nas1', how: 'created' });
    expect(facts.get('host-b')!.locks).to.deep.equal([]);
    expect(facts.get('host-a')!.datastores.find((d) => d.name === 'nas1')).to.include({ accessible: true });
    expect(facts.get('host-a')!.datastores[0]!.capacityBytes).to.be.greaterThan(0);
    expect(facts.get('host-c')!.notMounted).to.deep.equal(['nas1']);
    expect(facts.get('host-c')!.datastores).to.deep.equal([]);
  });

  it('refuses a second VM on the same disk on host-b while host-a holds the lock', async () => {
    const started = performance.now();
    const err = await site!.client.startVm({ ...spec, name: 'vm1-twin' }, 'host-b').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err, 'the twin must not start').to.be.instanceOf(MotusError);
    expect((err as MotusError).message).to.include('host-a');
    expect(JSON.stringify((err as MotusError).toJSON())).to.include('MOTUS_E_NFS_LOCK_HELD');
    console.log(`      twin refused after ${Math.round(performance.now() - started)} ms: ${(err as MotusError).message}`);
    expect(await qemuPidsOf('vm1-twin')).to.deep.equal([]);
    expect((await readLock(nfs, LOCK))?.owner).to.equal('host-a');
  });

  it('vetoes a migration to host-c, which does not see datastore nas1', async () => {
    const err = await site!.client.migrate({ vm: 'vm1', destination: 'host-c' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(MotusError);
    expect((err as MotusError).code).to.equal('MOTUS_E_MIGRATION_VETOED');
    expect((err as MotusError).message).to.include('host-c').and.include('nas1');
    console.log(`      veto: ${(err as MotusError).message}`);
    expect((await vmInfo('vm1')).host).to.equal('host-a');
  });

  for (const [from, to] of [['host-a', 'host-b'], ['host-b', 'host-a']] as const) {
    it(`migrates ${from} → ${to} while the guest writes; the lock passes straight to ${to}`, async () => {
      const before = acknowledged(serialLogs).length;
      const watcher = watchChanges(lockOwner, 20);
      const owners = watcher.seen;
      const events = await migrateAndFollow(site!.client, 'vm1', to);
      await watcher.stop();
      const last = events.at(-1)!;
      expect(last.type, JSON.stringify(events.filter((e) => e.type !== 'progress'))).to.equal('completed');
      const completed = last as Extract<MigrationEvent, { type: 'completed' }>;
      const at = (type: string) => Date.parse(events.find((e) => e.type === type)!.at);
      const vm = await vmInfo('vm1');
      expect([vm.host, vm.state]).to.deep.equal([to, 'running']);
      serialLogs.push(vm.serialLog!);

      // Sampled every 20 ms: the grant may be too short-lived to be seen, but nothing else may appear, nor go back.
      const order = [from, `${to}<-${from}`, to];
      const steps = owners.map((o) => order.indexOf(o));
      expect(steps[0], `owners ${owners.join(' → ')}`).to.equal(0);
      expect(steps.at(-1), `owners ${owners.join(' → ')}`).to.equal(2);
      steps.slice(1).forEach((s, i) => expect(s, `owners ${owners.join(' → ')}`).to.be.greaterThan(steps[i]!));
      const lock = await readLock(nfs, LOCK);
      expect(lock?.owner).to.equal(to);
      const facts = await waitFor('facts after the move', async () => {
        const f = await hostsFacts();
        return f.get(to)?.locks.length === 1 && f.get(from)?.locks.length === 0 ? f : undefined;
      }, 15_000, 250);
      const held = facts.get(to)!.locks[0]!;
      expect(held.how, 'adopted from the handover, no settle wait').to.equal('adopted');
      await waitFor('the guest to go on writing on the destination', () => (acknowledged(serialLogs).length >= before + 40 ? true : undefined), 120_000, 250);
      console.log(
        `      ${from} → ${to}: downtime ${completed.downtimeMs} ms, switchover → resumed ${at('resumed') - at('switchover')} ms, lock adopted in ${held.acquireMs} ms, total ${completed.totalTimeMs} ms; owners ${owners.join(' → ')}`,
      );
    });
  }

  it('rolls back after the lock moved: the frozen destination gives it back and the source resumes writing', async () => {
    const source = await vmInfo('vm1');
    expect(source.host).to.equal('host-a');
    const freezer = destinationFreezer('vm1', source.pid!);
    // Freeze the destination QEMU as soon as the lock leaves host-a: it can never run,
    // so the migration fails after the switchover has moved the lock (the server's
    // wait for the destination, or the migration's time limit, gives up).
    const watcher = watchChanges(lockOwner, 2, async (owner) => (owner === 'host-b' ? freezer.freeze() : undefined));
    const owners = watcher.seen;
    const before = acknowledged(serialLogs).at(-1)!;
    const events = await migrateAndFollow(site!.client, 'vm1', 'host-b', freezeAtSwitchover(freezer));
    await watcher.stop();
    const types = events.map((e) => e.type).filter((t) => t !== 'progress');
    expect(freezer.pid, `the destination was frozen (owners ${owners.join(' → ')})`).to.be.a('number');
    expect(types.slice(-2), types.join(',')).to.deep.equal(['failed', 'rolled-back']);
    expect(types).to.include('switchover');
    const vm = await vmInfo('vm1');
    expect([vm.host, vm.state]).to.deep.equal(['host-a', 'running']);
    expect(await qemuPidsOf('vm1'), 'the frozen destination was stopped').to.deep.equal([source.pid]);
    const lock = await readLock(nfs, LOCK);
    expect(lock?.owner).to.equal('host-a');
    const facts = await waitFor('facts after the rollback', async () => {
      const f = await hostsFacts();
      return f.get('host-a')?.locks.length === 1 && f.get('host-b')?.locks.length === 0 ? f : undefined;
    }, 15_000, 250);
    // Handed back by the destination when the rollback stops its copy, and adopted by the
    // source, whether its own settling (S1) or the rollback asked for it first. A narrow race
    // is left (the source's first attempt reads the lock before the hand-back order reaches
    // it, and only after the hand-back): the destination's released lock is then created
    // anew by the source. Either way the source is the only writer, as asserted above.
    expect(facts.get('host-a')!.locks[0]!.how, 'given back by the destination, or released and created again').to.be.oneOf(['adopted', 'created']);
    // '(none)': the released lock before the source creates it anew (the 'created' case above).
    const order = ['host-a', 'host-b<-host-a', 'host-b', 'host-a<-host-b', '(none)', 'host-a'];
    // Each owner seen must come later in that order than the one before (short-lived grants may be missed).
    let at = -1;
    for (const owner of owners) {
      const next = order.indexOf(owner, at + 1);
      expect(next, `owners ${owners.join(' → ')}`).to.be.greaterThan(at);
      at = next;
    }
    expect(at, `owners ${owners.join(' → ')}`).to.equal(order.length - 1);
    await waitFor('the guest to go on writing on host-a', () => (acknowledged(serialLogs).at(-1)! >= before + 20 ? true : undefined), 120_000, 250);
    const rolledBack = events.at(-1)!;
    const failed = events.find((e) => e.type === 'failed') as Extract<MigrationEvent, { type: 'failed' }>;
    console.log(
      `      rollback in ${failed.phase}: failed → rolled-back ${Date.parse(rolledBack.at) - Date.parse(failed.at)} ms; owners ${owners.join(' → ')}; ${failed.error.message}`,
    );
  });

  it('has every acknowledged record on the server, in order, read back with our NFS client', async () => {
    await site!.client.stopVm('vm1');
    await waitFor('vm1 to end', async () => ((await qemuPidsOf('vm1')).length === 0 ? true : undefined), 60_000);
    await waitFor('the lock to be released', async () => ((await readLock(nfs, LOCK)) === undefined ? true : undefined), 10_000);
    const acks = acknowledged(serialLogs);
    expect(acks.length).to.be.greaterThan(100);
    acks.forEach((seq, i) => expect(seq, 'acknowledged in order, none skipped').to.equal(i + 1));
    const image = await nfs.readFile(IMAGE);
    expect(image.length).to.equal(DISK_BYTES);
    const problems = acks.flatMap((seq) => recordProblem(image.subarray(seq * RECORD, (seq + 1) * RECORD), seq) ?? []);
    expect(problems).to.deep.equal([]);
    console.log(`      ${acks.length} acknowledged records verified on the server`);
  });

  it('stops the guest at once when its host loses the disk lock (fenced: QEMU killed, VM crashed, loss in the facts)', async () => {
    await site!.client.startVm(spec, 'host-b');
    const vm = await vmInfo('vm1');
    const log = [vm.serialLog!];
    await waitFor('records on host-b', () => (acknowledged(log).length >= 5 ? true : undefined), 120_000, 250);
    expect((await readLock(nfs, LOCK))?.owner).to.equal('host-b');
    // Another host (here: the test) removes the lock, as a wrongful takeover would.
    const t = performance.now();
    await nfs.remove(LOCK);
    await waitFor('the QEMU of vm1 to be killed', async () => ((await qemuPidsOf('vm1')).length === 0 ? true : undefined), 20_000, 100);
    const fencedMs = Math.round(performance.now() - t);
    const facts = await waitFor('the loss in host-b facts', async () => {
      const f = (await hostsFacts()).get('host-b');
      return f && f.lost.length > 0 ? f : undefined;
    }, 15_000, 250);
    expect(facts.lost.at(-1)).to.include({ vm: 'vm1', disk: 'disk0', datastore: 'nas1', reason: 'the lock file was removed' });
    expect(facts.lost.at(-1)!.fenced).to.deep.equal([vm.pid]);
    expect(facts.locks).to.deep.equal([]);
    await waitFor('vm1 to be marked crashed', async () => ((await vmInfo('vm1')).state === 'crashed' ? true : undefined), 15_000, 250);
    const last = acknowledged(log).at(-1)!;
    await sleep(1000);
    expect(acknowledged(log).at(-1), 'nothing written after the fence').to.equal(last);
    console.log(`      lock removed → QEMU killed in ${fencedMs} ms (heartbeat 1000 ms), last record ${last}`);
  });
});
