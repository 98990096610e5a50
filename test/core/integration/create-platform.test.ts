import { expect } from 'chai';
import { firstValueFrom, filter, take, toArray } from 'rxjs';
import { createPlatform, isMigrationEvent, type Platform } from '@motus/sdk';
import { tempDir } from '../../support/index.js';

describe('createPlatform (SDK embedding)', () => {
  let platform: Platform;
  let dir: { path: string; remove(): void };

  before(async () => {
    dir = tempDir('embed');
    platform = await createPlatform({
      site: { site: 'embedded', hosts: [{ name: 'host-a', memoryMiB: 512 }, { name: 'host-b', memoryMiB: 512 }], plugins: [{ package: '@motus/hv-qemu', config: { accelerator: 'tcg' } }] },
      stateDir: dir.path,
    });
  });

  after(async () => {
    await platform.stop();
    dir.remove();
  });

  it('loads the kernel from @motus/core and brings the site\'s hosts up with the real QEMU driver', async () => {
    const hosts = await platform.hosts();
    expect(hosts.map((h) => [h.name, h.state, h.memoryTotalMiB])).to.deep.equal([
      ['host-a', 'connected', 512],
      ['host-b', 'connected', 512],
    ]);
    expect(hosts[0]!.hypervisor).to.include({ kind: 'qemu', accelerator: 'tcg' });
  });

  it('streams typed events that narrow with the type guard', async () => {
    const rejected = firstValueFrom(platform.migrations$.pipe(filter(isMigrationEvent('rejected')), take(1), toArray()));
    try {
      await platform.migrate({ vm: 'nothing-here', destination: 'host-b' });
      expect.fail('unknown VM');
    } catch (err) {
      expect((err as { code: string }).code).to.equal('MOTUS_E_VM_NOT_FOUND');
    }
    const [event] = await rejected;
    expect(event!.error.code).to.equal('MOTUS_E_VM_NOT_FOUND');
  });

  it('refuses an invalid site with the field named', async () => {
    try {
      await createPlatform({ site: { hosts: [{ name: 'Bad Name' }] }, stateDir: dir.path });
      expect.fail('invalid site');
    } catch (err) {
      expect((err as { code: string }).code).to.equal('MOTUS_E_SITE_INVALID');
      expect((err as Error).message).to.include('hosts.0.name');
    }
  });
});
