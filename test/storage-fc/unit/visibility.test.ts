/**
 * Visibility verdicts over the fixture hosts: the server's veto from each host's
 * facts (and from a destination's rescan answer), and the agent's own handling
 * of a LUN it does not see — a rescan of its SCSI hosts, then the LUN or a coded
 * error naming it. The kernel's part of a rescan (finding a newly mapped LUN) is
 * played by the test: it adds the LUN's paths to the fixture tree after the
 * plugin wrote the scan files.
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MotusError, type DiskSpec, type HostInfo, type Logger, type VmInfo } from '@motus/sdk';
import { FcPluginConfigSchema, FcStorageProvider, diskPath, rescanFcHosts, visibilityVeto, type FcPluginConfig, type RescanAnswer } from '@motus/storage-fc';
import { tempDir } from '../../support/index.js';
import { buildFcHost, loadFixture, type FixtureHost } from '../support/fc-fixture.js';

const W = (suffix: string) => `0x600a0980383030454f2b4d6c6e6f${suffix}`;
const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => quiet };

function hostInfo(name: string, facts: unknown): HostInfo {
  return { name, state: 'connected', url: '', migrationAddress: '', memoryTotalMiB: 1024, memoryUsedMiB: 0, cpus: 2, plugins: { '@motus/storage-fc': facts } };
}

function vmWith(...wwns: string[]): { vm: VmInfo } {
  const disks: DiskSpec[] = wwns.map((w, i) => ({ id: `disk${i}`, path: diskPath(w), format: 'raw' }));
  return { vm: { name: 'vm2', host: 'host-a', state: 'running', spec: { name: 'vm2', memoryMiB: 128, vcpus: 1, boot: { kind: 'disk' }, disks } } };
}

describe('storage-fc visibility verdicts', () => {
  let dir: { path: string; remove: () => void };
  let config: FcPluginConfig;
  const providers: FcStorageProvider[] = [];
  const provider = async (host: string, rescanHosts?: typeof rescanFcHosts, root = dir.path) => {
    const p = new FcStorageProvider({
      host, logger: quiet, ...(rescanHosts ? { rescanHosts } : {}),
      config: { ...config, sysRoot: join(root, '{host}', 'sys'), devRoot: join(root, '{host}', 'dev') },
    });
    await p.start();
    providers.push(p);
    return p;
  };

  before(() => {
    dir = tempDir('fc-vis');
    buildFcHost(join(dir.path, 'host-a'), loadFixture('host-a'));
    buildFcHost(join(dir.path, 'host-b'), loadFixture('host-b'));
    config = FcPluginConfigSchema.parse({ datastores: [{ name: 'fcds1', luns: [W('7001'), W('7002'), W('7005'), W('7100')] }, { name: 'fcds2', luns: [W('712c')], hosts: ['host-a'] }], reservations: 'off' });
  });
  after(async () => {
    for (const p of providers) await p.close();
    dir.remove();
  });

  it('no veto when the destination sees every LUN of the VM with an active path (LUN 256 included)', async () => {
    const [a, b] = [await provider('host-a'), await provider('host-b')];
    expect(visibilityVeto(config, { ...vmWith(W('7001'), W('7100')), source: hostInfo('host-a', a.facts()), destination: hostInfo('host-b', b.facts()) })).to.equal(undefined);
  });

  it('vetoes a destination that does not see LUN 5, naming the LUN, its number, the datastore, the disk and the host', async () => {
    const [a, b] = [await provider('host-a'), await provider('host-b')];
    const veto = visibilityVeto(config, { ...vmWith(W('7001'), W('7005')), source: hostInfo('host-a', a.facts()), destination: hostInfo('host-b', b.facts()) })!;
    expect(veto.code).to.equal('MOTUS_E_DATASTORE_NOT_VISIBLE');
    expect(veto.reason).to.equal(`host host-b does not see LUN ${W('7005')} (LUN 5) of FC datastore fcds1 (no path to it on any FC HBA), which holds disk disk1 of VM vm2`);
    expect(veto.data).to.deep.equal({ host: 'host-b', datastore: 'fcds1', wwn: W('7005'), lun: 5, disk: 'disk1', vm: 'vm2' });
    const answer: RescanAnswer = { host: 'host-b', rescanned: [{ host: 'host1', ok: true, ms: 3 }, { host: 'host2', ok: true, ms: 3 }], luns: b.visibility([W('7005')]) };
    const after = visibilityVeto(config, { ...vmWith(W('7005')), source: hostInfo('host-a', a.facts()), destination: hostInfo('host-b', b.facts()) }, answer)!;
    expect(after.reason).to.include('also after rescanning host1, host2');
  });

  it('vetoes a destination outside the datastore\'s hosts, and one whose paths to the LUN all failed', async () => {
    const [a, b] = [await provider('host-a'), await provider('host-b')];
    const outside = visibilityVeto(config, { ...vmWith(W('712c')), source: hostInfo('host-a', a.facts()), destination: hostInfo('host-b', b.facts()) })!;
    expect(outside.reason).to.include("it is not among the datastore's hosts").and.include('LUN 300');
    const broken = loadFixture('host-b');
    broken.hbas.forEach((h) => (h.portState = 'Linkdown'));
    buildFcHost(join(dir.path, 'broken', 'host-b'), broken);
    const c = await provider('host-b', undefined, join(dir.path, 'broken'));
    const veto = visibilityVeto(config, { ...vmWith(W('7001')), source: hostInfo('host-a', a.facts()), destination: hostInfo('host-b', c.facts()) })!;
    expect(veto.reason).to.include('host host-b does not see').and.include('has no usable path').and.include('port is Linkdown');
    const err = await c.localPath({ id: 'disk0', path: diskPath(W('7001')), format: 'raw' }).catch((e: unknown) => e);
    expect((err as MotusError).code).to.equal('MOTUS_E_FC_NO_USABLE_PATH');
    expect((err as MotusError).message).to.include(W('7001')).and.include('host-b');
  });

  it('an agent that does not see a LUN rescans its SCSI hosts first: the LUN newly mapped to it is found', async () => {
    const root = join(dir.path, 'late');
    const spec: FixtureHost = loadFixture('host-b');
    const built = buildFcHost(join(root, 'host-b'), spec);
    let rescans = 0;
    const written: string[] = [];
    // What the kernel does on a rescan: it finds LUN 5, mapped to host-b since the last scan.
    const kernel: typeof rescanFcHosts = async (sys, options) => {
      const results = await rescanFcHosts(sys, options);
      rescans++;
      written.push(readFileSync(built.scanFile(1), 'latin1'), readFileSync(built.scanFile(2), 'latin1'));
      const a = loadFixture('host-a');
      buildFcHost(join(root, 'host-b'), { ...spec, luns: [...spec.luns, a.luns.find((l) => l.lun === 5)!] });
      return results;
    };
    const b = await provider('host-b', kernel, root);
    expect(b.visibility([W('7005')])[0]!.visible).to.equal(false);
    const device = await b.localPath({ id: 'disk0', path: diskPath(W('7005')), format: 'raw' });
    expect(rescans).to.equal(1);
    expect(device).to.match(/dm-uuid-mpath-3600a0980383030454f2b4d6c6e6f7005$/);
    expect(written).to.deep.equal(['- - -\n', '- - -\n']);
    expect(b.facts().lastRescan!.results.map((r) => [r.host, r.ok])).to.deep.equal([['host1', true], ['host2', true]]);
  });

  it('a LUN still not seen after the rescan is MOTUS_E_DATASTORE_NOT_VISIBLE naming LUN, disk, VM and host', async () => {
    const b = await provider('host-b');
    const err = await b.acquire('vm2', [{ id: 'disk1', path: diskPath(W('7005')), format: 'raw' }]).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(MotusError);
    expect((err as MotusError).code).to.equal('MOTUS_E_DATASTORE_NOT_VISIBLE');
    expect((err as MotusError).message).to.equal(`host host-b does not see LUN ${W('7005')} of FC datastore fcds1 (no path on any HBA, also after a rescan), which holds disk disk1 of VM vm2`);
    expect(readFileSync(join(dir.path, 'host-b', 'sys', 'class', 'scsi_host', 'host1', 'scan'), 'latin1')).to.equal('- - -\n');
  });
});
