import { expect } from 'chai';
import { parseCpuInfo } from '@motus/cpu-compat';
import { fixtureText } from '../support/fixtures.js';

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

describe('cpu-compat: /proc/cpuinfo', () => {
  it('reads vendor, family/model/stepping and flags of the recorded host', () => {
    const r = parseCpuInfo(fixtureText('cpuinfo-recorded.txt'));
    expect(r.ok).to.equal(true);
    if (!r.ok) return;
    expect(r.value.vendor).to.match(/^(GenuineIntel|AuthenticAMD)$/);
    expect(r.value.family).to.be.a('number').greaterThan(0);
    expect(r.value.flags).to.include.members(['fpu', 'sse2', 'lm']);
    expect(r.value.logicalCpus).to.be.greaterThan(0);
  });

  it('says what is wrong with malformed input', () => {
    expect(parseCpuInfo('')).to.deep.include({ ok: false });
    const noFlags = parseCpuInfo('processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\n');
    expect(noFlags.ok).to.equal(false);
    if (!noFlags.ok) expect(noFlags.error).to.contain('flags');
    const badFamily = parseCpuInfo('processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: six\nmodel\t\t: 85\nflags\t\t: fpu\n');
    expect(badFamily.ok).to.equal(false);
    if (!badFamily.ok) expect(badFamily.error).to.contain('decimal');
    const arm = parseCpuInfo('processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd\n');
    expect(arm.ok).to.equal(false);
  });

  it('never throws, whatever the bytes', () => {
    const rand = seeded(7);
    const base = fixtureText('cpuinfo-recorded.txt');
    for (let i = 0; i < 500; i++) {
      const cut = base.slice(0, Math.floor(rand() * base.length));
      const noise = Buffer.from(Array.from({ length: Math.floor(rand() * 300) }, () => Math.floor(rand() * 256))).toString('latin1');
      for (const text of [cut, noise, cut + noise, noise + base]) {
        const r = parseCpuInfo(text);
        expect(r.ok === true || typeof (r as { error: string }).error === 'string').to.equal(true);
      }
    }
  });
});
