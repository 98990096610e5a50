import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { tempDir, waitFor } from '../../support/system.js';
import { isAlive, requireQemuTools } from '../support/vm-pool.js';

/** Runs in a child Node process: launches one VM through the driver, prints its pid, then idles. */
function ownerScript(driverModule: string, runDir: string): string {
  return `
import { QemuDriver } from ${JSON.stringify(driverModule)};
const driver = new QemuDriver({ accelerator: 'tcg' });
const vm = await driver.launch({ name: 'orphan', memoryMiB: 64, vcpus: 1, boot: { kind: 'disk' } }, { runDir: ${JSON.stringify(runDir)} });
process.stdout.write('QEMU-PID ' + vm.pid + '\\n');
setInterval(() => {}, 1000);
`;
}

describe('hv-qemu with real QEMU: no QEMU outlives its owner', function () {
  let dir: ReturnType<typeof tempDir>;
  let qemuPid = 0;

  before(() => requireQemuTools());
  beforeEach(() => {
    dir = tempDir('hvq-owner');
  });
  afterEach(() => {
    // Only reached with a live QEMU if the test failed: do not leave it behind.
    if (qemuPid > 0 && isAlive(qemuPid)) process.kill(qemuPid, 'SIGKILL');
    dir.remove();
  });

  it('kills QEMU when its owner process is killed with SIGKILL', async () => {
    const driverModule = fileURLToPath(import.meta.resolve('@motus/hv-qemu'));
    const script = join(dir.path, 'owner.mjs');
    writeFileSync(script, ownerScript(driverModule, join(dir.path, 'vm')));
    const owner = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    owner.stdout.on('data', (c: Buffer) => (out += c.toString()));
    owner.stderr.on('data', (c: Buffer) => (err += c.toString()));
    try {
      qemuPid = await waitFor('the owner to report its QEMU pid', () => {
        if (owner.exitCode !== null) throw new Error(`the owner exited early: ${err}`);
        const m = /QEMU-PID (\d+)/.exec(out);
        return m ? Number(m[1]) : undefined;
      }, 30_000);
      expect(isAlive(qemuPid)).to.equal(true);
      owner.kill('SIGKILL');
      await waitFor('QEMU to die with its owner', () => (isAlive(qemuPid) ? undefined : true), 10_000, 50);
    } finally {
      owner.kill('SIGKILL');
    }
  });
});
