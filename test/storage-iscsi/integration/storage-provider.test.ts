/**
 * The iSCSI StorageProvider of two hosts against a real tgtd: LUN facts, the
 * ownership protocol (take, give, refusals, a race for a free LUN), the loss
 * of a lease (fence called), and the way back after the target restarts.
 */
import { expect } from 'chai';
import { MotusError, StorageMetrics, type DiskSpec, type Logger } from '@motus/sdk';
import { MetricsRegistry } from '@motus/core';
import { IscsiPluginConfigSchema, IscsiSession, IscsiStorageProvider, diskUrl, keyHex, reservationKey } from '@motus/storage-iscsi';
import { parseExposition, sleep, valueOf, waitFor } from '../../support/index.js';
import { startTgt, type Tgt } from '../support/tgt.js';

const TARGET = 'iqn.2026-01.org.motus.test:prov';

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => quiet };

describe('storage-iscsi StorageProvider against tgtd (integration)', function () {
  this.timeout(120_000);
  let tgt: Tgt;
  let probe: IscsiSession;
  const providers: IscsiStorageProvider[] = [];
  const fenced: Array<{ host: string; url: string }> = [];
  let disk: DiskSpec;
  let disk2: DiskSpec;

  const provider = async (host: string, metrics?: StorageMetrics): Promise<IscsiStorageProvider> => {
    const config = IscsiPluginConfigSchema.parse({
      datastores: [{ name: 'san1', portal: tgt.portal, target: TARGET, hosts: ['host-a', 'host-b', 'host-c-crash'] }],
      leaseCheckMs: 300,
      factsRefreshMs: 60_000,
      commandTimeoutMs: 5_000,
      reconnectTimeoutMs: 20_000,
    });
    const p = new IscsiStorageProvider({ host, config, logger: quiet, fence: (url) => (fenced.push({ host, url }), []), ...(metrics ? { metrics } : {}) });
    await p.start();
    providers.push(p);
    return p;
  };
  const keys = async (lun = 1) => [...new Set((await probe.lun(lun).readKeys()).keys)].map(keyHex).sort();

  before(async () => {
    tgt = await startTgt();
    await tgt.addTarget({ iqn: TARGET, lunsMiB: [16, 8] });
    probe = await IscsiSession.login({ portal: tgt.portal, targetIqn: TARGET, initiatorIqn: 'iqn.2026-01.org.motus.test:probe' });
    disk = { id: 'disk0', path: diskUrl({ portal: tgt.portal, target: TARGET }, 1), format: 'raw' };
    disk2 = { id: 'disk1', path: diskUrl({ portal: tgt.portal, target: TARGET }, 2), format: 'raw' };
  });

  after(async () => {
    for (const p of providers) await p.close();
    await probe?.logout().catch(() => undefined);
    await tgt?.stop();
  });

  it('reports the LUNs with NAA ids, sizes and no owner', async () => {
    const a = await provider('host-a');
    const f = a.facts();
    expect(f.initiatorIqn).to.equal('iqn.2026-01.org.motus:host-a');
    expect(f.datastores[0]).to.include({ name: 'san1', accessible: true, capacityBytes: 24 << 20, freeBytes: 24 << 20 });
    expect(f.datastores[0]!.luns.map((l) => [l.lun, l.bytes, l.keys.length])).to.deep.equal([[1, 16 << 20, 0], [2, 8 << 20, 0]]);
    expect(f.datastores[0]!.luns[0]!.naa).to.match(/^naa\./);
    expect(await a.datastores()).to.deep.equal([{ name: 'san1', kind: 'iscsi', url: `iscsi://${tgt.portal}/${TARGET}`, capacityBytes: 24 << 20, freeBytes: 24 << 20, accessible: true }]);
    expect(a.owns(disk)).to.equal(true);
    expect(a.owns({ id: 'x', path: `iscsi://${tgt.portal}/iqn.2026-01.other:t/1`, format: 'raw' })).to.equal(false);
  });

  it('takes and gives a LUN; the other host is refused while it is held, naming the owner', async () => {
    const [a, b] = [providers[0]!, await provider('host-b')];
    await a.acquire('vm1', [disk]);
    expect(await keys()).to.deep.equal([keyHex(reservationKey('host-a'))]);
    expect((await probe.lun(1).readReservation()).holder, 'the reservation is only the arbiter of a take').to.equal(undefined);
    const err = await b.acquire('vm1', [disk]).then(() => undefined, (e: unknown) => e);
    expect(err).to.be.instanceOf(MotusError);
    expect((err as MotusError).code).to.equal('MOTUS_E_ISCSI_LUN_HELD');
    expect((err as MotusError).data).to.include({ owner: 'host-a', lun: 1, datastore: 'san1' });
    expect(await keys(), 'a refused host leaves no registration').to.deep.equal([keyHex(reservationKey('host-a'))]);
    await a.release('vm1', [disk]);
    expect(await keys()).to.deep.equal([]);
    await b.acquire('vm1', [disk]);
    expect(await keys()).to.deep.equal([keyHex(reservationKey('host-b'))]);
    await b.release('vm1', [disk]);
    expect(a.facts().releases.at(-1)).to.include({ vm: 'vm1', disk: 'disk0', lun: 1, commands: 1 });
  });

  it('counts LUN scans and registration checks (lease renewals) with their latency, by datastore, for /metrics', async () => {
    const registry = new MetricsRegistry();
    const c = await provider('host-c-crash', new StorageMetrics(registry.forPlugin('@motus/storage-iscsi'), 'iscsi'));
    await c.acquire('vm-metrics', [disk2]);
    const renewals = async () => valueOf(parseExposition(await registry.exposition()), 'motus_storage_lease_renewals_total', { kind: 'iscsi', datastore: 'san1', outcome: 'ok' }) ?? 0;
    // A check every 300 ms.
    await waitFor('two registration checks', async () => ((await renewals()) >= 2 ? true : undefined), 10_000, 100);
    await c.release('vm-metrics', [disk2]);
    const families = parseExposition(await registry.exposition());
    expect(valueOf(families, 'motus_storage_operation_seconds_count', { kind: 'iscsi', datastore: 'san1', operation: 'check' })).to.be.at.least(1);
    expect(valueOf(families, 'motus_storage_operation_seconds_count', { kind: 'iscsi', datastore: 'san1', operation: 'lease_refresh' })).to.be.at.least(2);
    expect(valueOf(families, 'motus_storage_lease_renewals_total', { kind: 'iscsi', datastore: 'san1', outcome: 'failed' })).to.equal(undefined);
  });

  it('gives every disk back when one of them cannot be taken', async () => {
    const [a, b] = providers as [IscsiStorageProvider, IscsiStorageProvider];
    await b.acquire('other', [disk2]);
    const err = await a.acquire('vm2', [disk, disk2]).then(() => undefined, (e: unknown) => e);
    expect((err as MotusError).code).to.equal('MOTUS_E_ISCSI_LUN_HELD');
    expect(await keys(1)).to.deep.equal([]);
    expect(a.facts().leases).to.deep.equal([]);
    await b.release('other', [disk2]);
  });

  it('lets exactly one of two hosts win a race for a free LUN', async () => {
    const [a, b] = providers as [IscsiStorageProvider, IscsiStorageProvider];
    for (let round = 0; round < 5; round++) {
      const results = await Promise.allSettled([a.acquire('race', [disk]), b.acquire('race', [disk])]);
      const winners = results.map((r, i) => (r.status === 'fulfilled' ? i : -1)).filter((i) => i >= 0);
      expect(winners.length, JSON.stringify(results.map((r) => (r.status === 'rejected' ? String(r.reason) : 'ok')))).to.be.at.most(1);
      const held = await keys();
      if (winners.length === 1) expect(held).to.deep.equal([keyHex(reservationKey(winners[0] === 0 ? 'host-a' : 'host-b'))]);
      else expect(held).to.deep.equal([]);
      await Promise.all([a.release('race', [disk]), b.release('race', [disk])]);
    }
  });

  it('fences the writers when its registration is preempted', async () => {
    const a = providers[0]!;
    await a.acquire('vm1', [disk]);
    const key = 0x7e57n;
    await probe.lun(1).registerAndIgnore(key);
    await probe.lun(1).preempt(key, reservationKey('host-a'), 'WRITE_EXCLUSIVE_REGISTRANTS_ONLY');
    await waitFor('the fence', () => (fenced.length > 0 ? true : undefined), 10_000, 50);
    expect(fenced).to.deep.equal([{ host: 'host-a', url: disk.path }]);
    expect(a.facts().leases).to.deep.equal([]);
    expect(a.facts().lost.at(-1)).to.include({ vm: 'vm1', disk: 'disk0', lun: 1 });
    await probe.lun(1).unregister(key);
    fenced.length = 0;
  });

  it('gives back, when its agent starts again, a registration its earlier run left behind', async () => {
    const crashed = await provider('host-c-crash');
    await crashed.acquire('vm9', [disk2]);
    expect(await keys(2)).to.deep.equal([keyHex(reservationKey('host-c-crash'))]);
    // Closing without release is what a killed agent leaves: its key on the LUN.
    await crashed.close();
    expect(await keys(2)).to.deep.equal([keyHex(reservationKey('host-c-crash'))]);
    const again = await provider('host-c-crash');
    expect(await keys(2)).to.deep.equal([]);
    expect(again.facts().datastores[0]!.luns.find((l) => l.lun === 2)!.keys).to.deep.equal([]);
  });

  it('logs in with CHAP; a wrong secret leaves the datastore inaccessible with the reason in the facts', async () => {
    const chapTarget = 'iqn.2026-01.org.motus.test:chap';
    await tgt.addTarget({ iqn: chapTarget, lunsMiB: [4], chap: { user: 'motus', secret: 'secret-0123456789' } });
    const make = async (secret: string) => {
      const config = IscsiPluginConfigSchema.parse({ datastores: [{ name: 'sanchap', portal: tgt.portal, target: chapTarget, chap: { user: 'motus', secret } }], factsRefreshMs: 60_000 });
      const p = new IscsiStorageProvider({ host: 'host-a', config, logger: quiet, fence: () => [] });
      await p.start();
      providers.push(p);
      return p.facts().datastores[0]!;
    };
    const good = await make('secret-0123456789');
    expect(good).to.include({ accessible: true, capacityBytes: 4 << 20 });
    const bad = await make('wrong-secret-xyz');
    expect(bad.accessible).to.equal(false);
    expect(bad.error).to.match(/CHAP|auth/i);
  });

  it('keeps its LUN across a target restart (registrations forgotten) and across a reconnection', async () => {
    const a = providers[0]!;
    await a.acquire('vm1', [disk]);
    await tgt.kill();
    await sleep(500);
    await tgt.restart();
    await waitFor('the key registered again', async () => {
      const s = await IscsiSession.login({ portal: tgt.portal, targetIqn: TARGET, initiatorIqn: 'iqn.2026-01.org.motus.test:probe2' });
      try {
        const k = [...new Set((await s.lun(1).readKeys()).keys)].map(keyHex);
        return k.length === 1 && k[0] === keyHex(reservationKey('host-a')) ? true : undefined;
      } finally {
        await s.logout().catch(() => undefined);
      }
    }, 40_000, 500);
    await sleep(1000);
    expect(fenced, 'a restarted target is not a lost lease').to.deep.equal([]);
    expect(a.facts().leases).to.have.length(1);
    probe = await IscsiSession.login({ portal: tgt.portal, targetIqn: TARGET, initiatorIqn: 'iqn.2026-01.org.motus.test:probe' });
    await a.release('vm1', [disk]);
    expect(await keys()).to.deep.equal([]);
  });
});
