/**
 * A loop device over a file image: the real block device that stands for an FC
 * LUN in the tests (QEMU's host_device driver needs a block device, and no FC
 * HBA exists here). Made with losetup (util-linux); a test that cannot make one
 * fails and says why, it does not skip.
 */
import { execFileSync } from 'node:child_process';
import { statSync, truncateSync, writeFileSync } from 'node:fs';
import { requireCommand } from '../../support/index.js';

export interface LoopDevice {
  device: string;
  major: number;
  minor: number;
  image: string;
  detach(): void;
}

export function attachLoop(image: string, sizeMiB: number): LoopDevice {
  const losetup = requireCommand('losetup', 'mount');
  writeFileSync(image, '');
  truncateSync(image, sizeMiB << 20);
  let device: string;
  try {
    // --direct-io: the loop device writes through to the image, so what QEMU wrote is in the file at once.
    device = execFileSync(losetup, ['--find', '--show', '--direct-io=on', image], { encoding: 'utf8' }).trim();
  } catch (err) {
    throw new Error(`cannot attach a loop device to ${image} (this test needs root and /dev/loop-control): ${(err as Error).message}`);
  }
  const rdev = statSync(device).rdev;
  const major = (rdev >> 8) & 0xfff;
  const minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
  let attached = true;
  const detach = () => {
    if (!attached) return;
    attached = false;
    try {
      execFileSync(losetup, ['--detach', device]);
    } catch {
      // Already gone.
    }
  };
  process.on('exit', detach);
  return { device, major, minor, image, detach };
}
