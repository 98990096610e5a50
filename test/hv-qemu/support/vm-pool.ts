import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import { join } from 'node:path';
import type { LaunchOptions, VmSpec } from '@motus/sdk';
import { QemuDriver, type QemuDriverOptions, type QemuVm } from '@motus/hv-qemu';
import { requireCommand, tempDir } from '../../support/system.js';

/** Fails (never skips) when QEMU or setpriv is missing, saying how to install them. */
export function requireQemuTools(): void {
  requireCommand('qemu-system-x86_64', 'qemu-system-x86');
  requireCommand('setpriv', 'util-linux');
}

/** True while `pid` is a live process (a zombie counts as gone: it runs nothing). */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

export function idleSpec(name: string, memoryMiB = 64): VmSpec {
  return { name, memoryMiB, vcpus: 1, boot: { kind: 'disk' } };
}

/**
 * A driver plus every VM a test launched through it, and their run folders, so
 * that an afterEach hook can stop them all whatever the test did.
 */
export class VmPool {
  readonly driver: QemuDriver;
  private readonly vms: QemuVm[] = [];
  private readonly dir = tempDir('hvq');
  private count = 0;

  constructor(options: QemuDriverOptions = {}) {
    this.driver = new QemuDriver({ accelerator: 'tcg', ...options });
  }

  runDir(label: string): string {
    return join(this.dir.path, `${label}-${this.count++}`);
  }

  async launch(spec: VmSpec, options: Partial<LaunchOptions> = {}): Promise<QemuVm> {
    const vm = await this.driver.launch(spec, { runDir: this.runDir(spec.name), ...options });
    this.vms.push(vm);
    return vm;
  }

  get pids(): number[] {
    return this.vms.map((vm) => vm.pid);
  }

  async cleanup(): Promise<void> {
    await Promise.allSettled(this.vms.map((vm) => vm.stop(1_000)));
    await this.driver.dispose();
    this.vms.length = 0;
  }

  remove(): void {
    this.dir.remove();
  }
}

/**
 * The mocha hooks of a suite whose tests launch QEMU: the tools are checked
 * first (the suite fails saying how to install them), each test gets a fresh
 * pool, handed to `use`, and after each test its VMs are stopped and none of
 * their QEMU processes may still run.
 */
export function vmPoolPerTest(use: (pool: VmPool) => void): void {
  let pool: VmPool;
  before(() => requireQemuTools());
  beforeEach(() => {
    pool = new VmPool();
    use(pool);
  });
  afterEach(async () => {
    await pool.cleanup();
    for (const pid of pool.pids) expect(isAlive(pid), `QEMU ${pid} still runs`).to.equal(false);
    pool.remove();
  });
}
