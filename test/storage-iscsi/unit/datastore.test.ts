/** The datastore layer's logic without a target: config, disk URLs, identities, the veto, the fence's matching. */
import { expect } from 'chai';
import type { HostInfo, MigrationHookContext, VmInfo } from '@motus/sdk';
import {
  IscsiPluginConfigSchema,
  argvOpens,
  diskUrl,
  initiatorName,
  locateDisk,
  parseDiskUrl,
  reservationKey,
  visibilityVeto,
  type IscsiHostFacts,
} from '@motus/storage-iscsi';

const TARGET = 'iqn.2026-01.org.example:san1';
const config = IscsiPluginConfigSchema.parse({
  datastores: [
    { name: 'san1', portal: '10.0.0.5:3260', target: TARGET, hosts: ['host-a', 'host-b'] },
    { name: 'san2', portal: '10.0.0.6', target: 'iqn.2026-01.org.example:san2' },
  ],
});

function host(name: string, facts?: Partial<IscsiHostFacts>): HostInfo {
  return { name, plugins: facts ? { '@motus/storage-iscsi': facts } : {} } as unknown as HostInfo;
}

function lunFacts(naa: string | undefined, accessible = true): Partial<IscsiHostFacts> {
  return {
    datastores: [{ name: 'san1', portal: '10.0.0.5:3260', target: TARGET, accessible, capacityBytes: 1, freeBytes: 0, luns: naa ? [{ lun: 1, naa, bytes: 1, blockSize: 512, vendor: 'v', product: 'p', keys: [] }] : [] }],
    notVisible: [],
  };
}

const vm = { name: 'vm1', spec: { name: 'vm1', disks: [{ id: 'disk0', path: `iscsi://10.0.0.5:3260/${TARGET}/1`, format: 'raw' }] } } as unknown as VmInfo;
const ctx = (source: HostInfo, destination: HostInfo): Pick<MigrationHookContext, 'vm' | 'source' | 'destination'> => ({ vm, source, destination });

describe('storage-iscsi datastore layer (unit)', () => {
  it('parses and builds disk URLs, and finds their datastore by portal and target', () => {
    expect(parseDiskUrl(`iscsi://10.0.0.5:3260/${TARGET}/1`)).to.deep.equal({ host: '10.0.0.5', port: 3260, target: TARGET, lun: 1 });
    expect(parseDiskUrl(`iscsi://10.0.0.6/${TARGET}/7`)).to.include({ port: 3260, lun: 7 });
    for (const bad of ['/dev/sda', `nfs://10.0.0.5/${TARGET}/1`, `iscsi://10.0.0.5/${TARGET}`, `iscsi://10.0.0.5/${TARGET}/x`, `iscsi://u%p@10.0.0.5/${TARGET}/1`, `iscsi://10.0.0.5:99999/${TARGET}/1`, `iscsi://10.0.0.5/${TARGET}/1?iser`]) {
      expect(parseDiskUrl(bad), bad).to.equal(undefined);
    }
    expect(diskUrl({ portal: '10.0.0.6', target: TARGET }, 3)).to.equal(`iscsi://10.0.0.6:3260/${TARGET}/3`);
    expect(locateDisk(config.datastores, `iscsi://10.0.0.5/${TARGET}/2`)).to.deep.equal({ datastore: 'san1', lun: 2, url: `iscsi://10.0.0.5/${TARGET}/2` });
    expect(locateDisk(config.datastores, `iscsi://10.0.0.5:3261/${TARGET}/2`), 'another portal').to.equal(undefined);
    expect(locateDisk(config.datastores, `iscsi://10.0.0.6/${TARGET}/2`), 'another target').to.equal(undefined);
  });

  it('validates the config: names, portals, target names, duplicates, mutual CHAP', () => {
    expect(config.initiatorPrefix).to.equal('iqn.2026-01.org.motus');
    expect(config.leaseCheckMs).to.equal(2000);
    const bad = [
      { datastores: [{ name: 'San 1', portal: '1.2.3.4', target: TARGET }] },
      { datastores: [{ name: 'a', portal: '1.2.3.4:0', target: TARGET }] },
      { datastores: [{ name: 'a', portal: '1.2.3.4', target: 'not-an-iqn' }] },
      { datastores: [{ name: 'a', portal: '1.2.3.4', target: TARGET }, { name: 'a', portal: '1.2.3.5', target: TARGET }] },
      { datastores: [{ name: 'a', portal: '1.2.3.4', target: TARGET, mutualChap: { user: 'u', secret: 's' } }] },
      { datastores: [], extra: 1 },
    ];
    for (const b of bad) expect(IscsiPluginConfigSchema.safeParse(b).success, JSON.stringify(b)).to.equal(false);
  });

  it('derives a stable, non-zero key and an initiator name per host', () => {
    expect(reservationKey('host-a')).to.equal(reservationKey('host-a'));
    expect(reservationKey('host-a')).to.not.equal(reservationKey('host-b'));
    expect(reservationKey('host-a')).to.not.equal(0n);
    expect(initiatorName('iqn.2026-01.org.motus', 'Host_A')).to.equal('iqn.2026-01.org.motus:host-a');
  });

  it('vetoes a destination that does not see the LUN, naming LUN, NAA and host', () => {
    const naa = 'naa.60000000000000000000000000000001';
    expect(visibilityVeto(config, ctx(host('host-a', lunFacts(naa)), host('host-b', lunFacts(naa))))).to.equal(undefined);
    const cases: Array<[HostInfo, string]> = [
      [host('host-c'), 'reports no iSCSI datastores yet'],
      [host('host-c', { datastores: [], notVisible: ['san1'] }), 'not among its datastores'],
      [host('host-b', lunFacts(naa, false)), 'cannot reach the target'],
      [host('host-b', lunFacts(undefined)), 'no such LUN'],
      [host('host-b', lunFacts('naa.60000000000000000000000000000002')), 'another device'],
    ];
    for (const [destination, why] of cases) {
      const veto = visibilityVeto(config, ctx(host('host-a', lunFacts(naa)), destination));
      expect(veto?.code).to.equal('MOTUS_E_DATASTORE_NOT_VISIBLE');
      expect(veto?.reason).to.include(`host ${destination.name}`).and.include(`LUN 1 (${naa}) of iSCSI datastore san1`).and.include(why).and.include('disk disk0 of VM vm1');
      expect(veto?.data).to.include({ host: destination.name, lun: 1, naa, datastore: 'san1' });
    }
  });

  it('matches a writer only when it opens the disk URL as a whole option value', () => {
    const url = `iscsi://10.0.0.5:3260/${TARGET}/1`;
    expect(argvOpens(['qemu', '-drive', `file=${url},format=raw,if=none`], url)).to.equal(true);
    expect(argvOpens(['qemu', '-drive', `file=${url}0,format=raw`], url)).to.equal(false);
    expect(argvOpens(['qemu', '-drive', `file=iscsi://10.0.0.5:3260/${TARGET}/12,format=raw`], url)).to.equal(false);
  });
});
