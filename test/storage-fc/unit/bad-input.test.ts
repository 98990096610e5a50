/**
 * Damaged sysfs and /dev trees: missing and unreadable attributes, dangling
 * symlinks, garbage in attribute files, devices vanishing. Each makes the HBA,
 * remote port, path or LUN unusable with a reason that names it; discovery
 * never throws, whatever is broken (random damage included).
 */
import { expect } from 'chai';
import { chmodSync, mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { discoverFc, readAttr, type FcInventory } from '@motus/storage-fc';
import { tempDir } from '../../support/index.js';
import { buildFcHost, loadFixture, type BuiltHost } from '../support/fc-fixture.js';

const W = (suffix: string) => `0x600a0980383030454f2b4d6c6e6f${suffix}`;

describe('storage-fc discovery on damaged trees', () => {
  let dir: { path: string; remove: () => void };
  let n = 0;
  const fresh = (name = 'host-b'): BuiltHost => buildFcHost(join(dir.path, `h${n++}`), loadFixture(name));
  const scan = (h: BuiltHost): Promise<FcInventory> => discoverFc({ sys: h.sys, dev: h.dev });
  const fcHostAttr = (h: BuiltHost, host: number, attr: string) => join(h.sys, 'class', 'fc_host', `host${host}`, attr);
  const rportAttr = (h: BuiltHost, rport: string, attr: string) => join(h.sys, 'class', 'fc_remote_ports', rport, attr);
  const deviceAttr = (h: BuiltHost, hctl: string, attr: string) => join(h.sys, 'class', 'scsi_device', hctl, 'device', attr);

  before(() => (dir = tempDir('fc-bad')));
  after(() => dir.remove());

  it('garbage in an HBA port_name: that HBA is unusable, its paths failed, the LUNs go on over the other HBA', async () => {
    const h = fresh();
    writeFileSync(fcHostAttr(h, 1, 'port_name'), '0xZZZZ-not-a-wwn\n');
    const inv = await scan(h);
    const hba = inv.hbas.find((x) => x.name === 'host1')!;
    expect(hba.usable).to.equal(false);
    expect(hba.reason).to.include('host1').and.include('port_name').and.include('not a 64-bit port WWN');
    for (const lun of inv.luns) {
      expect([lun.activePaths, lun.failedPaths, lun.usable]).to.deep.equal([2, 2, true]);
      expect(lun.paths.filter((p) => p.hba === 'host1').every((p) => p.state === 'failed' && p.reason!.includes('host1'))).to.equal(true);
    }
  });

  it('a missing port_state and binary garbage in another: both HBAs unusable, every LUN reported with no usable path, naming it', async () => {
    const h = fresh();
    rmSync(fcHostAttr(h, 1, 'port_state'));
    writeFileSync(fcHostAttr(h, 2, 'port_state'), Buffer.from([0x4f, 0x00, 0xff, 0x01, 0x0a]));
    const inv = await scan(h);
    expect(inv.hbas.map((x) => x.usable)).to.deep.equal([false, false]);
    expect(inv.hbas[0]!.reason).to.include('port_state').and.include('missing');
    expect(inv.hbas[1]!.reason).to.include('binary garbage');
    for (const lun of inv.luns) {
      expect(lun.usable).to.equal(false);
      expect(lun.device).to.equal(undefined);
      expect(lun.reason).to.include(lun.wwn!).and.include('has no usable path');
    }
  });

  it('a Linkdown HBA counts as offline', async () => {
    const h = fresh();
    writeFileSync(fcHostAttr(h, 2, 'port_state'), 'Linkdown\n');
    const inv = await scan(h);
    expect(inv.hbas[1]!.reason).to.equal('HBA host2 (0x2100f4e9d4000b02): port is Linkdown');
    expect(inv.luns.every((l) => l.activePaths === 2)).to.equal(true);
  });

  it('a remote port without the FCP Target role, one with an empty port_name: their paths fail with the reason', async () => {
    const h = fresh();
    writeFileSync(rportAttr(h, 'rport-1:0-0', 'roles'), 'FCP Initiator\n');
    writeFileSync(rportAttr(h, 'rport-2:0-1', 'port_name'), '\n');
    const inv = await scan(h);
    const r0 = inv.remotePorts.find((r) => r.name === 'rport-1:0-0')!;
    const r1 = inv.remotePorts.find((r) => r.name === 'rport-2:0-1')!;
    expect(r0.reason).to.include('not an FCP Target');
    expect(r1.reason).to.include('port_name').and.include('empty');
    expect(inv.luns.every((l) => l.activePaths === 2 && l.usable)).to.equal(true);
  });

  it('a device with no wwid, one with a garbled wwid: unidentified or failed with the reason, never grouped under a wrong LUN', async () => {
    const h = fresh();
    const [p0, p1] = h.paths.filter((p) => p.lun === 1);
    rmSync(deviceAttr(h, p0!.hctl, 'wwid'));
    writeFileSync(deviceAttr(h, p1!.hctl, 'wwid'), 'naa.60ab\n');
    const inv = await scan(h);
    expect(inv.unidentified.map((p) => p.hctl).sort()).to.deep.equal([p0!.hctl, p1!.hctl].sort());
    expect(inv.unidentified.find((p) => p.hctl === p0!.hctl)!.reason).to.include('wwid').and.include('missing');
    expect(inv.unidentified.find((p) => p.hctl === p1!.hctl)!.reason).to.include('not a valid NAA identifier');
    const lun1 = inv.luns.find((l) => l.wwn === W('7001'))!;
    expect(lun1.paths).to.have.length(2);
  });

  it('an offline SCSI device, a size that is not a number, a missing /dev node: each path failed with its reason', async () => {
    const h = fresh();
    const [p0, p1, p2] = h.paths.filter((p) => p.lun === 2);
    writeFileSync(deviceAttr(h, p0!.hctl, 'state'), 'offline\n');
    writeFileSync(join(h.sys, 'block', p1!.device, 'size'), 'lots\n');
    rmSync(join(h.dev, p2!.device));
    const inv = await scan(h);
    const lun2 = inv.luns.find((l) => l.wwn === W('7002'))!;
    const reason = (hctl: string) => lun2.paths.find((p) => p.hctl === hctl)!.reason;
    expect(reason(p0!.hctl)).to.include(`SCSI device ${p0!.hctl} is offline`);
    expect(reason(p1!.hctl)).to.include(`'lots' is not a sector count`);
    expect(reason(p2!.hctl)).to.include(`dev/${p2!.device}`).and.include('missing');
    expect([lun2.activePaths, lun2.usable]).to.deep.equal([1, true]);
  });

  it('an attribute that is a folder, and one it may not read (when not root): unreadable with the reason', async () => {
    const h = fresh();
    rmSync(fcHostAttr(h, 1, 'speed'));
    mkdirSync(fcHostAttr(h, 1, 'speed'));
    expect(readAttr(fcHostAttr(h, 1, 'speed'))).to.deep.include({ ok: false });
    const inv = await scan(h);
    expect(inv.hbas[0]!.speedGbit).to.equal(undefined);
    expect(inv.hbas[0]!.usable).to.equal(true);
    const file = fcHostAttr(h, 2, 'port_name');
    chmodSync(file, 0o000);
    const r = readAttr(file);
    // Root reads it anyway; anyone else is refused, and says so.
    if (process.getuid?.() !== 0) expect(r).to.deep.equal({ ok: false, reason: `${file}: unreadable (permission denied)` });
    else expect(r.ok).to.equal(true);
  });

  it('dangling symlinks: a scsi_device class entry, the multipath map\'s /dev node, a by-path link', async () => {
    const h = fresh();
    const p = h.paths.find((x) => x.lun === 256)!;
    // The device went away between listing and reading (its class entry dangles).
    rmSync(join(h.root, p.deviceDir), { recursive: true });
    // The multipath map of LUN 1 lost its node: the by-id and mapper links dangle.
    const dm = h.maps.get(W('7001'))!;
    rmSync(join(h.dev, dm));
    // A by-path link to nowhere.
    symlinkSync('../../sdzz', join(h.dev, 'disk', 'by-path', 'pci-0000:5e:00.0-fc-0x500a098100000001-lun-77'));
    const inv = await scan(h);
    const lun256 = inv.luns.find((l) => l.wwn === W('7100'))!;
    // Without its folder it has no identity either: reported apart, not grouped.
    expect(lun256.paths.map((x) => x.hctl)).to.not.include(p.hctl);
    expect(lun256.paths).to.have.length(3);
    const gone = inv.unidentified.find((x) => x.hctl === p.hctl);
    expect(gone?.state).to.equal('failed');
    expect(gone?.reason).to.include(p.hctl).and.include('missing');
    const lun1 = inv.luns.find((l) => l.wwn === W('7001'))!;
    expect(lun1.multipath?.dm).to.equal(dm);
    expect(lun1.usable).to.equal(true);
    expect(lun1.device).to.match(/\/dev\/sd[a-z]+$/);
    expect(lun1.warnings.join(' ')).to.include(`${dm} has no device node`);
    expect(inv.problems.join(' ')).to.include('lun-77').and.include('dangling');
  });

  it('a multipath map whose uuid belongs to another LUN is not used for this one', async () => {
    const h = fresh();
    const dm = h.maps.get(W('7002'))!;
    writeFileSync(join(h.sys, 'block', dm, 'dm', 'uuid'), 'mpath-3600a0980383030454f2b4d6c6e6f7001\n');
    const inv = await scan(h);
    const lun2 = inv.luns.find((l) => l.wwn === W('7002'))!;
    expect(lun2.multipath).to.equal(undefined);
    expect(lun2.warnings.join(' ')).to.include(`${dm} holds a path of 3600a0980383030454f2b4d6c6e6f7002 but is mpath-3600a0980383030454f2b4d6c6e6f7001`);
    expect(lun2.device).to.match(/sd[a-z]+$/);
  });

  it('no fc_host folder at all (no FC HBA, or a wrong root): an empty view with the problem', async () => {
    const inv = await discoverFc({ sys: join(dir.path, 'nothing', 'sys'), dev: join(dir.path, 'nothing', 'dev') });
    expect(inv.hbas).to.deep.equal([]);
    expect(inv.luns).to.deep.equal([]);
    expect(inv.problems[0]).to.include('no FC HBAs').and.include('missing');
  });

  it('never throws under random damage (truncation, garbage, removals, dangling links; 12 trees × 25 damages)', async () => {
    let seed = 7;
    const rand = (k: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % k;
    };
    const garbage = () => Buffer.from(Array.from({ length: rand(40) }, () => rand(256)));
    const files = (root: string): string[] => {
      const out: string[] = [];
      const walk = (d: string) => {
        for (const e of readdirSync(d, { withFileTypes: true })) {
          const f = join(d, e.name);
          if (e.isDirectory()) walk(f);
          else out.push(f);
        }
      };
      walk(root);
      return out;
    };
    const base = fresh('host-a');
    const all = files(join(base.root, 'sys', 'devices')).concat(files(base.dev));
    for (let round = 0; round < 12; round++) {
      const h: BuiltHost = { ...base, root: join(dir.path, `r${round}`), sys: join(dir.path, `r${round}`, 'sys'), dev: join(dir.path, `r${round}`, 'dev') };
      // A copy is quicker than a fresh build (cp keeps the links as links).
      execFileSync('cp', ['-a', base.root, h.root]);
      const mine = all.map((f) => f.replace(base.root, h.root));
      for (let k = 0; k < 25; k++) {
        const f = mine[rand(mine.length)]!;
        const what = rand(4);
        try {
          if (what === 0) writeFileSync(f, garbage());
          else if (what === 1) rmSync(f, { force: true, recursive: true });
          else if (what === 2) writeFileSync(f, '');
          else {
            rmSync(f, { force: true });
            symlinkSync('../nowhere', f);
          }
        } catch {
          // A file removed with its folder earlier in this round.
        }
      }
      const inv = await scan(h);
      expect(inv.hbas.length + inv.problems.length).to.be.greaterThan(0);
      for (const lun of inv.luns) expect(lun.usable || typeof lun.reason === 'string').to.equal(true);
      for (const p of inv.luns.flatMap((l) => l.paths)) expect(p.state === 'active' || typeof p.reason === 'string').to.equal(true);
      rmSync(h.root, { recursive: true, force: true });
    }
  });
});
