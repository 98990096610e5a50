/** QEMU's libiscsi logs in with the host's initiator name when the site gives hv-qemu one. */
import { expect } from 'chai';
import { QemuPluginConfigSchema, buildQemuArgv } from '@motus/hv-qemu';
import type { VmSpec } from '@motus/sdk';

const spec = (path: string): VmSpec => ({ name: 'vm1', memoryMiB: 128, vcpus: 1, boot: { kind: 'disk' }, disks: [{ id: 'disk0', path, format: 'raw' }] }) as VmSpec;
const LUN = 'iscsi://127.0.0.1:3260/iqn.2026-01.org.example:san1/1';

describe('hv-qemu: initiator name for iscsi:// disks (unit)', () => {
  it('adds -iscsi initiator-name only for iscsi:// disks and only when configured', () => {
    const argv = buildQemuArgv(spec(LUN), { runDir: '/tmp/x' }, 'tcg', 'iqn.2026-01.org.motus:host-a');
    const at = argv.indexOf('-iscsi');
    expect(argv[at + 1]).to.equal('initiator-name=iqn.2026-01.org.motus:host-a');
    expect(buildQemuArgv(spec(LUN), { runDir: '/tmp/x' }, 'tcg')).to.not.include('-iscsi');
    expect(buildQemuArgv(spec('/var/lib/vm1.img'), { runDir: '/tmp/x' }, 'tcg', 'iqn.2026-01.org.motus:host-a')).to.not.include('-iscsi');
  });

  it('checks the configured name', () => {
    expect(QemuPluginConfigSchema.safeParse({ iscsiInitiatorName: 'iqn.2026-01.org.motus:{host}' }).success).to.equal(true);
    expect(QemuPluginConfigSchema.safeParse({ iscsiInitiatorName: 'host-a' }).success).to.equal(false);
  });
});
