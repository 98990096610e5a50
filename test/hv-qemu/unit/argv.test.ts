import { expect } from 'chai';
import { mkdtempSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isMotusError, type VmSpec } from '@motus/sdk';
import { buildQemuArgv, escapeOptionValue, netdevId, runFiles } from '@motus/hv-qemu';

const base: VmSpec = { name: 'web-1', memoryMiB: 256, vcpus: 2, boot: { kind: 'disk' } };

function after(argv: string[], flag: string): string[] {
  return argv.flatMap((a, i) => (a === flag ? [argv[i + 1]!] : []));
}

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

describe('hv-qemu argv builder', () => {
  it('builds the runtime, machine and QMP options with the defaults', () => {
    const argv = buildQemuArgv(base, { runDir: '/run/vm' }, 'tcg');
    expect(argv).to.include.members(['-nodefaults', '-no-user-config']);
    expect(after(argv, '-display')).to.deep.equal(['none']);
    expect(after(argv, '-serial')).to.deep.equal(['file:/run/vm/serial.log']);
    expect(after(argv, '-qmp')).to.deep.equal(['unix:/run/vm/qmp.sock,server=on,wait=off']);
    expect(after(argv, '-machine')).to.deep.equal(['q35']);
    expect(after(argv, '-cpu')).to.deep.equal(['qemu64']);
    expect(after(argv, '-accel')).to.deep.equal(['tcg']);
    expect(after(argv, '-m')).to.deep.equal(['256M']);
    expect(after(argv, '-smp')).to.deep.equal(['2']);
    expect(after(argv, '-name')).to.deep.equal(['guest=web-1']);
    expect(argv).to.not.include('-incoming');
    expect(argv).to.not.include('-kernel');
  });

  it('waits for a deferred incoming migration when asked, with the same device model', () => {
    const source = buildQemuArgv(base, { runDir: '/r' }, 'kvm');
    const destination = buildQemuArgv(base, { runDir: '/r', incoming: true }, 'kvm');
    expect(after(destination, '-incoming')).to.deep.equal(['defer']);
    expect(destination.filter((a, i) => a !== '-incoming' && destination[i - 1] !== '-incoming')).to.deep.equal(source);
  });

  it('passes the CPU model, machine and kernel boot through', () => {
    const argv = buildQemuArgv(
      { ...base, cpuModel: 'Skylake-Client,-avx512f', machine: 'pc-q35-7.2', boot: { kind: 'kernel', kernel: '/k/vmlinuz', initrd: '/k/initrd', cmdline: 'console=ttyS0 quiet' } },
      { runDir: '/r' },
      'tcg',
    );
    // A comma inside an option value is doubled for QEMU's parser.
    expect(after(argv, '-cpu')).to.deep.equal(['Skylake-Client,,-avx512f']);
    expect(after(argv, '-machine')).to.deep.equal(['pc-q35-7.2']);
    expect(after(argv, '-kernel')).to.deep.equal(['/k/vmlinuz']);
    expect(after(argv, '-initrd')).to.deep.equal(['/k/initrd']);
    expect(after(argv, '-append')).to.deep.equal(['console=ttyS0 quiet']);
  });

  it('attaches disks as blockdev nodes with cache.direct=on and virtio-blk devices', () => {
    const argv = buildQemuArgv(
      {
        ...base,
        disks: [
          { id: 'root', path: '/mnt/nas/web-1,root.qcow2', format: 'qcow2' },
          { id: 'data', path: '/dev/mapper/lun7', format: 'raw', readOnly: true },
        ],
      },
      { runDir: '/r' },
      'tcg',
    );
    expect(after(argv, '-blockdev')).to.deep.equal([
      'driver=file,node-name=proto-0,filename=/mnt/nas/web-1,,root.qcow2,cache.direct=on,cache.no-flush=off,read-only=off',
      'driver=qcow2,node-name=disk-root,file=proto-0,cache.direct=on,cache.no-flush=off,read-only=off',
      'driver=host_device,node-name=proto-1,filename=/dev/mapper/lun7,cache.direct=on,cache.no-flush=off,read-only=on',
      'driver=raw,node-name=disk-data,file=proto-1,cache.direct=on,cache.no-flush=off,read-only=on',
    ]);
    expect(after(argv, '-device')).to.deep.equal(['virtio-blk-pci,id=root,drive=disk-root', 'virtio-blk-pci,id=data,drive=disk-data']);
  });

  it('opens a block device node outside /dev (a storage plugin\'s own device tree) with host_device', () => {
    // /dev/null is a character device: still file; a block node anywhere is host_device (mknod needs root, so the test makes none).
    const blockNode = ['/dev/loop0', '/dev/vda', '/dev/sda'].find((p) => {
      try {
        return statSync(p).isBlockDevice();
      } catch {
        return false;
      }
    });
    const dir = mkdtempSync(join(tmpdir(), 'motus-argv-'));
    try {
      const link = join(dir, 'mpatha');
      symlinkSync(blockNode ?? '/dev/null', link);
      const argv = buildQemuArgv({ ...base, disks: [{ id: 'lun', path: link, format: 'raw' }] }, { runDir: '/r' }, 'tcg');
      expect(after(argv, '-blockdev')[0]).to.match(new RegExp(`^driver=${blockNode ? 'host_device' : 'file'},node-name=proto-0,filename=${link}`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('hands disk URIs (nfs://, iscsi://) to QEMU as -drive, which parses them', () => {
    const argv = buildQemuArgv({ ...base, disks: [{ id: 'root', path: 'nfs://127.0.0.1/srv/vms/a,b.qcow2', format: 'qcow2' }] }, { runDir: '/r' }, 'tcg');
    expect(after(argv, '-drive')).to.deep.equal(['file=nfs://127.0.0.1/srv/vms/a,,b.qcow2,format=qcow2,if=none,id=disk-root,cache.direct=on,cache.no-flush=off,read-only=off']);
    expect(after(argv, '-device')).to.deep.equal(['virtio-blk-pci,id=root,drive=disk-root']);
    expect(argv).to.not.include('-blockdev');
  });

  it('attaches NICs to the netdev the network provider gave, keeping the MAC', () => {
    const argv = buildQemuArgv(
      { ...base, nics: [{ id: 'nic0', mac: '52:54:00:AB:CD:EF', network: 'prod' }, { id: 'nic1', mac: '52:54:00:00:00:02', network: 'prod' }] },
      {
        runDir: '/r',
        nics: [
          { nicId: 'nic0', netdev: 'stream,id=n0,addr.type=unix,addr.path=/run/sw/p1.sock' },
          { nicId: 'nic1', netdev: 'stream,addr.type=unix,addr.path=/run/sw/p2.sock' },
        ],
      },
      'tcg',
    );
    expect(after(argv, '-netdev')).to.deep.equal(['stream,id=n0,addr.type=unix,addr.path=/run/sw/p1.sock', 'stream,addr.type=unix,addr.path=/run/sw/p2.sock,id=net-nic1']);
    expect(after(argv, '-device')).to.deep.equal(['virtio-net-pci,id=nic0,netdev=n0,mac=52:54:00:ab:cd:ef', 'virtio-net-pci,id=nic1,netdev=net-nic1,mac=52:54:00:00:00:02']);
  });

  it('refuses specs it cannot express, with MOTUS_E_INVALID_REQUEST', () => {
    const cases: Array<[VmSpec, Parameters<typeof buildQemuArgv>[1]]> = [
      [{ ...base, nics: [{ id: 'nic0', mac: '52:54:00:00:00:01', network: 'n' }] }, { runDir: '/r' }],
      [{ ...base, nics: [{ id: 'nic0', mac: 'not-a-mac', network: 'n' }] }, { runDir: '/r', nics: [{ nicId: 'nic0', netdev: 'user' }] }],
      [{ ...base, disks: [{ id: 'a', path: '/x', format: 'raw' }, { id: 'a', path: '/y', format: 'raw' }] }, { runDir: '/r' }],
      [{ ...base, disks: [{ id: 'bad id', path: '/x', format: 'raw' }] }, { runDir: '/r' }],
      [{ ...base, memoryMiB: 0 }, { runDir: '/r' }],
      [{ ...base, vcpus: 1.5 }, { runDir: '/r' }],
    ];
    for (const [spec, options] of cases) {
      const err = thrown(() => buildQemuArgv(spec, options, 'tcg'));
      expect(isMotusError(err, 'MOTUS_E_INVALID_REQUEST'), String(err)).to.equal(true);
    }
  });

  it('escapes option values and reads netdev ids', () => {
    expect(escapeOptionValue('a,b,,c')).to.equal('a,,b,,,,c');
    expect(netdevId('stream,id=n0,addr.path=/x')).to.equal('n0');
    expect(netdevId('stream,addr.path=/a,,id=n0')).to.equal(undefined);
    expect(netdevId('user')).to.equal(undefined);
    expect(runFiles('/r')).to.deep.equal({ qmpSocket: '/r/qmp.sock', serialLog: '/r/serial.log', pidFile: '/r/qemu.pid' });
  });
});
