import { expect } from 'chai';
import { isMotusError } from '@motus/sdk';
import { chooseAccelerator } from '@motus/hv-qemu';

// None of these reach QEMU: the choice is forced, or the device check fails first.
describe('hv-qemu accelerator choice', () => {
  const qemuPath = '/nonexistent/qemu-system-x86_64';

  it('takes MOTUS_ACCEL over the plugin config', async () => {
    expect(await chooseAccelerator({ qemuPath, setting: 'kvm', env: { MOTUS_ACCEL: 'tcg' } })).to.deep.equal({ accelerator: 'tcg', reason: 'forced by MOTUS_ACCEL=tcg' });
  });

  it('takes a forced plugin config when the environment says nothing', async () => {
    expect(await chooseAccelerator({ qemuPath, setting: 'kvm', env: {} })).to.deep.equal({ accelerator: 'kvm', reason: 'forced by plugin config accelerator: kvm' });
  });

  it('falls back to TCG, saying why, when the KVM device is missing', async () => {
    const choice = await chooseAccelerator({ qemuPath, setting: 'auto', env: {}, kvmDevice: '/nonexistent/kvm' });
    expect(choice.accelerator).to.equal('tcg');
    expect(choice.reason).to.include('/nonexistent/kvm does not exist');
  });

  it('falls back to TCG when the KVM device exists but no guest runs under it', async () => {
    // /dev/null is accessible; the probe then fails to boot anything with this QEMU path.
    const choice = await chooseAccelerator({ qemuPath, setting: 'auto', env: { MOTUS_ACCEL: 'auto' }, kvmDevice: '/dev/null', bootTimeoutMs: 3000 });
    expect(choice.accelerator).to.equal('tcg');
    expect(choice.reason).to.include('did not run under KVM');
  });

  it('refuses a setting it does not know', async () => {
    try {
      await chooseAccelerator({ qemuPath, setting: 'auto', env: { MOTUS_ACCEL: 'hvf' } });
      expect.fail('expected a rejection');
    } catch (err) {
      expect(isMotusError(err, 'MOTUS_E_INVALID_REQUEST')).to.equal(true);
    }
  });
});
