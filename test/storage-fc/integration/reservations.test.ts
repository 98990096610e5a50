/**
 * The FC plugin's ownership code against a real SCSI target's persistent
 * reservations. No FC target exists on these machines (no HBA, no LIO/qla2xxx
 * target mode), so the LUN is a tgt iSCSI LUN and each FC *path* of the fixture
 * hosts (fixtures/host-a.json: 3 active paths; host-b.json: 4) is its own iSCSI
 * session — its own I_T nexus, as each HBA port × array port is on FC. The
 * FcStorageProvider runs unchanged (discovery of the fixture, lease code, facts);
 * only the transport of its PR commands is the iSCSI initiator's `Lun` instead
 * of sg_persist, through the SDK's PersistentReservationDevice contract.
 */
import { expect } from 'chai';
import { join } from 'node:path';
import { MotusError, StorageMetrics, keyHex, reservationKey, type DiskSpec, type Logger } from '@motus/sdk';
import { MetricsRegistry } from '@motus/core';
import { FcPluginConfigSchema, FcStorageProvider, diskPath } from '@motus/storage-fc';
import { IscsiSession } from '@motus/storage-iscsi';
import { parseExposition, tempDir, valueOf } from '../../support/index.js';
import { startTgt, type Tgt } from '../../storage-iscsi/support/tgt.js';
import { buildFcHost, loadFixture } from '../support/fc-fixture.js';

const TARGET = 'iqn.2026-01.org.motus.test:fc-array';
const WWN = '0x600a0980383030454f2b4d6c6e6f7001';
const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => quiet };

describe('storage-fc reservations against a real SCSI target (tgt through iSCSI, one session per FC path)', function () {
  this.timeout(120_000);
  let tgt: Tgt;
  let dir: { path: string; remove: () => void };
  let probe: IscsiSession;
  const sessions = new Map<string, IscsiSession>();
  const providers = new Map<string, FcStorageProvider>();
  const registry = new MetricsRegistry();
  const disk: DiskSpec = { id: 'disk0', path: diskPath(WWN), format: 'raw' };
  const nameOfKey = (k: bigint) => (['host-a', 'host-b'].find((h) => reservationKey(h) === k) ?? keyHex(k));

  /** The session that stands for one path (a device node of a fixture host). */
  const pathSession = async (host: string, device: string): Promise<IscsiSession> => {
    const id = `${host}:${device}`;
    let s = sessions.get(id);
    if (!s) {
      s = await IscsiSession.login({ portal: tgt.portal, targetIqn: TARGET, initiatorIqn: `iqn.2026-01.org.motus.test:${host}-${device.split('/').pop()}`, commandTimeoutMs: 10_000 });
      sessions.set(id, s);
    }
    return s;
  };
  const owners = async (): Promise<string> => {
    const { keys } = await probe.lun(1).readKeys();
    return keys.map(nameOfKey).join('+') || '(none)';
  };
  const writeVia = async (host: string): Promise<string[]> => {
    const results: string[] = [];
    for (const [id, s] of sessions) {
      if (!id.startsWith(`${host}:`)) continue;
      results.push(await s.lun(1).write(0, Buffer.alloc(512, 7)).then(() => 'ok', (e: unknown) => (e as MotusError).code));
    }
    return results;
  };

  before(async () => {
    tgt = await startTgt();
    await tgt.addTarget({ iqn: TARGET, lunsMiB: [16] });
    probe = await IscsiSession.login({ portal: tgt.portal, targetIqn: TARGET, initiatorIqn: 'iqn.2026-01.org.motus.test:probe', commandTimeoutMs: 10_000 });
    dir = tempDir('fc-pr');
    for (const host of ['host-a', 'host-b']) {
      const built = buildFcHost(join(dir.path, host), loadFixture(host));
      // Every path's session logs in now (the provider's reservation calls are synchronous to get).
      for (const p of built.paths.filter((x) => x.lun === 1)) await pathSession(host, join(built.dev, p.device));
      const config = FcPluginConfigSchema.parse({
        datastores: [{ name: 'fcds1', luns: [WWN], hosts: ['host-a', 'host-b'] }],
        sysRoot: join(dir.path, '{host}', 'sys'),
        devRoot: join(dir.path, '{host}', 'dev'),
        factsRefreshMs: 60_000,
      });
      const provider = new FcStorageProvider({
        host, config, logger: quiet,
        ...(host === 'host-b' ? { metrics: new StorageMetrics(registry.forPlugin('@motus/storage-fc'), 'fc') } : {}),
        reservationDevice: (device) => {
          const s = sessions.get(`${host}:${device}`);
          if (!s) throw new Error(`no session stands for ${device}`);
          return s.lun(1);
        },
      });
      await provider.start();
      providers.set(host, provider);
    }
  });

  after(async () => {
    for (const p of providers.values()) await p.close();
    for (const s of sessions.values()) await s.logout().catch(() => undefined);
    await probe?.logout().catch(() => undefined);
    await tgt?.stop();
    dir?.remove();
  });

  it('host-a takes the LUN: its key on each of its 3 active paths, a Write Exclusive – Registrants Only reservation held', async () => {
    await providers.get('host-a')!.acquire('vm1', [disk]);
    expect(await owners()).to.equal('host-a+host-a+host-a');
    const r = await probe.lun(1).readReservation();
    expect(r.holder).to.deep.include({ key: reservationKey('host-a'), type: 'WRITE_EXCLUSIVE_REGISTRANTS_ONLY' });
    const lease = providers.get('host-a')!.facts().leases[0]!;
    expect(lease).to.include({ vm: 'vm1', disk: 'disk0', datastore: 'fcds1', wwn: WWN, enforced: true });
    expect(lease.paths).to.have.length(3);
    expect(lease.device).to.match(/dm-uuid-mpath-3600a0980383030454f2b4d6c6e6f7001$/);
  });

  it('the array refuses host-b\'s writes and takes host-a\'s on every registered path (the reservation fences, not the agent)', async () => {
    // host-a's fourth path runs over the Blocked remote port: not registered, so refused too.
    expect(await writeVia('host-a')).to.deep.equal(['ok', 'ok', 'ok', 'MOTUS_E_SCSI_RESERVATION_CONFLICT']);
    expect(await writeVia('host-b')).to.deep.equal(Array(4).fill('MOTUS_E_SCSI_RESERVATION_CONFLICT'));
  });

  it('host-b cannot take it: MOTUS_E_FC_LUN_HELD naming host-a, and nothing of host-b is left on the LUN', async () => {
    const err = await providers.get('host-b')!.acquire('vm1', [disk]).then(() => undefined, (e: unknown) => e);
    expect(err).to.be.instanceOf(MotusError);
    expect((err as MotusError).code).to.equal('MOTUS_E_FC_LUN_HELD');
    expect((err as MotusError).message).to.include('host-a').and.include(WWN).and.include('LUN 1');
    expect(await owners()).to.equal('host-a+host-a+host-a');
  });

  it('the facts of both hosts name host-a as the owner after a scan', async () => {
    await providers.get('host-b')!.scan();
    const lun = providers.get('host-b')!.facts().luns.find((l) => l.wwn === WWN)!;
    expect(lun).to.include({ owner: 'host-a', datastore: 'fcds1' });
    expect(lun.keys).to.deep.equal([keyHex(reservationKey('host-a'))]);
    expect(providers.get('host-b')!.facts().datastores[0]).to.include({ accessible: true, capacityBytes: 64 << 20, freeBytes: 0 });
  });

  it('handover as at switchover: host-a gives (release + unregister every path), host-b takes; now host-a is fenced', async () => {
    await providers.get('host-a')!.release('vm1', [disk]);
    expect(await owners()).to.equal('(none)');
    expect((await probe.lun(1).readReservation()).holder).to.equal(undefined);
    await providers.get('host-b')!.acquire('vm1', [disk]);
    expect(await owners()).to.equal('host-b+host-b+host-b+host-b');
    expect(await writeVia('host-b')).to.deep.equal(Array(4).fill('ok'));
    expect(await writeVia('host-a')).to.deep.equal(Array(4).fill('MOTUS_E_SCSI_RESERVATION_CONFLICT'));
    const released = providers.get('host-a')!.facts().releases.at(-1)!;
    const taken = providers.get('host-b')!.facts().leases[0]!;
    console.log(`      given in ${released.ms} ms (${released.commands} commands), taken in ${taken.acquireMs} ms (${taken.commands} commands)`);
  });

  it('a preempted lease is reported lost at the next scan', async () => {
    const key = 0x7e57n;
    await probe.lun(1).registerAndIgnore(key);
    await probe.lun(1).preempt(key, reservationKey('host-b'), 'WRITE_EXCLUSIVE_REGISTRANTS_ONLY');
    await providers.get('host-b')!.scan();
    const facts = providers.get('host-b')!.facts();
    expect(facts.leases).to.deep.equal([]);
    expect(facts.lost.at(-1)).to.include({ vm: 'vm1', disk: 'disk0', wwn: WWN });
    expect(facts.lost.at(-1)!.reason).to.include(keyHex(key));
    // The scans and the lease check that found the loss are counted for /metrics.
    const families = parseExposition(await registry.exposition());
    expect(valueOf(families, 'motus_storage_operation_seconds_count', { kind: 'fc', datastore: 'fcds1', operation: 'check' })).to.be.at.least(2);
    expect(valueOf(families, 'motus_storage_lease_renewals_total', { kind: 'fc', datastore: 'fcds1', outcome: 'failed' })).to.equal(1);
    await probe.lun(1).release(key, 'WRITE_EXCLUSIVE_REGISTRANTS_ONLY');
    await probe.lun(1).unregister(key);
    expect(await owners()).to.equal('(none)');
  });

  it('two hosts racing for the free LUN: exactly one wins, the other is refused and leaves no key', async () => {
    for (let round = 0; round < 4; round++) {
      const results = await Promise.allSettled([providers.get('host-a')!.acquire(`race${round}`, [disk]), providers.get('host-b')!.acquire(`race${round}`, [disk])]);
      const winners = results.flatMap((r, i) => (r.status === 'fulfilled' ? [['host-a', 'host-b'][i]!] : []));
      expect(winners, JSON.stringify(results.map((r) => (r.status === 'rejected' ? (r.reason as Error).message : 'won')))).to.have.length(1);
      const loser = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      expect((loser.reason as MotusError).code).to.equal('MOTUS_E_FC_LUN_HELD');
      const keys = (await owners()).split('+');
      expect(new Set(keys)).to.deep.equal(new Set([winners[0]]));
      await providers.get(winners[0]!)!.release(`race${round}`, [disk]);
      expect(await owners()).to.equal('(none)');
    }
  });
});
