import { expect } from 'chai';
import { MotusError, type HostInfo } from '@motus/sdk';
import { IscsiOperatorView, datastoreViews, type IscsiDatastoreFacts, type IscsiHostFacts } from '@motus/storage-iscsi';

const PLUGIN = '@motus/storage-iscsi';
const lun = (n: number, owner?: string, keys: string[] = owner ? [`k-${owner}`] : []) => ({ lun: n, naa: `naa.${n}`, bytes: 32 << 20, blockSize: 512, vendor: 'IET', product: 'VIRTUAL-DISK', keys, ...(owner ? { owner } : {}) });
const ds = (luns: IscsiDatastoreFacts['luns'], scannedAt: string, accessible = true): IscsiDatastoreFacts => ({
  name: 'san1', portal: '127.0.0.1:3260', target: 'iqn.t:san1', accessible, ...(accessible ? {} : { error: 'connection refused' }), capacityBytes: 0, freeBytes: 0, luns, scannedAt,
});
function host(name: string, datastores: IscsiDatastoreFacts[], leases: Array<{ lun: number; vm: string }> = [], state: HostInfo['state'] = 'connected'): HostInfo {
  const facts: IscsiHostFacts = {
    host: name, initiatorIqn: `iqn.x:${name}`, key: `k-${name}`, datastores, notVisible: [], releases: [], lost: [],
    leases: leases.map((l) => ({ ...l, disk: 'disk0', datastore: 'san1', url: '', since: '', acquireMs: 1, commands: 5 })),
  };
  return { name, state, url: '', migrationAddress: '', memoryTotalMiB: 0, memoryUsedMiB: 0, cpus: 1, plugins: { [PLUGIN]: facts } };
}
const codeOf = (p: Promise<unknown>) => p.then(() => 'ok', (e: MotusError) => e.code);

describe('storage-iscsi: the operators\' view of datastores and the preempt of a stuck LUN', () => {
  const hosts = [
    host('host-a', [ds([lun(1, 'host-a'), lun(2)], '2026-01-01T00:00:02Z')], [{ lun: 1, vm: 'vm1' }]),
    host('host-b', [ds([lun(1, 'host-b'), lun(2), lun(3, undefined, ['k-gone'])], '2026-01-01T00:00:01Z')]),
    host('host-c', [ds([], '2026-01-01T00:00:03Z', false)]),
  ];

  it('merges the hosts\' facts: each LUN from the freshest scan, who sees it, size, owner, free bytes, unreachable hosts', () => {
    const [view] = datastoreViews(hosts, PLUGIN);
    expect(view!.luns.map((l) => [l.lun, l.owner ?? '-', l.seenBy.join(',')])).to.deep.equal([
      [1, 'host-a', 'host-a,host-b'],
      [2, '-', 'host-a,host-b'],
      [3, '-', 'host-b'],
    ]);
    expect(view!.luns[2]!.keys).to.deep.equal(['k-gone']);
    expect([view!.capacityBytes, view!.freeBytes]).to.deep.equal([3 * (32 << 20), 32 << 20]);
    expect(view!.seenBy).to.deep.equal(['host-a', 'host-b']);
    expect(view!.unreachable).to.deep.equal([{ host: 'host-c', error: 'connection refused' }]);
    expect(() => datastoreViews(hosts, PLUGIN, 'san9')).to.throw(MotusError).with.property('code', 'MOTUS_E_NOT_FOUND');
  });

  it('refuses to preempt a connected holder unless forced, picks another host that sees the LUN, and validates the request', async () => {
    const calls: Array<[string, string, unknown]> = [];
    const view = new IscsiOperatorView(PLUGIN, { hosts: async () => hosts }, async (h, m, p) => {
      calls.push([h, m, p]);
      return { before: [], after: [], removed: [] };
    });
    expect(await codeOf(view.preempt({ datastore: 'san1', lun: 1, host: 'host-a' }))).to.equal('MOTUS_E_ISCSI_LUN_HELD');
    expect(await codeOf(view.preempt({ datastore: 'san1', lun: 1, all: true }))).to.equal('MOTUS_E_ISCSI_LUN_HELD');
    expect(calls).to.deep.equal([]);
    expect(await view.preempt({ datastore: 'san1', lun: 1, host: 'host-a', force: true })).to.deep.include({ by: 'host-b' });
    expect(await view.preempt({ datastore: 'san1', lun: 3, all: true })).to.deep.include({ by: 'host-a' });
    expect(calls).to.deep.equal([
      ['host-b', 'preempt', { datastore: 'san1', lun: 1, host: 'host-a' }],
      ['host-a', 'preempt', { datastore: 'san1', lun: 3, all: true }],
    ]);
    expect(await codeOf(view.preempt({ datastore: 'san1', lun: 1 }))).to.equal('MOTUS_E_INVALID_REQUEST');
    expect(await codeOf(view.preempt({ datastore: 'san1', lun: -1, host: 'host-a' }))).to.equal('MOTUS_E_INVALID_REQUEST');
    expect(await codeOf(view.preempt({ datastore: 'san2', lun: 1, host: 'host-z' }))).to.equal('MOTUS_E_DATASTORE_NOT_VISIBLE');
  });
});
