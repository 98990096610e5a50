import { expect } from 'chai';
import { MotusError } from '@motus/sdk';
import { parseSite } from '@motus/core';

function problems(text: string): { field: string; line?: number; message: string }[] {
  try {
    parseSite(text, 'site.yaml');
  } catch (err) {
    expect(err).to.be.instanceOf(MotusError);
    expect((err as MotusError).code).to.equal('MOTUS_E_SITE_INVALID');
    return (err as MotusError).data.problems as never;
  }
  return expect.fail('expected an invalid site') as never;
}

describe('site file', () => {
  it('fills defaults for a minimal site', () => {
    const site = parseSite('hosts:\n  - name: host-a\n');
    expect(site.site).to.equal('motus');
    expect(site.server.listen).to.equal('127.0.0.1:0');
    expect(site.hosts[0]).to.deep.equal({ name: 'host-a', listen: '127.0.0.1:0', migrationAddress: '127.0.0.1' });
    expect(site.plugins).to.deep.equal([{ package: '@motus/hv-qemu', config: {} }]);
    expect(site.migration).to.deep.equal({ maxBandwidthMiBps: 1024, downtimeLimitMs: 300, timeoutBaseSeconds: 120, timeoutSecondsPerGiB: 240 });
  });

  it('names the field and the line of each problem', () => {
    const found = problems(['site: lab', 'hosts:', '  - name: host-a', '    memoryMiB: -5', '  - name: Host_B', 'migration:', '  downtimeLimitMs: fast', 'colour: blue'].join('\n'));
    const byField = Object.fromEntries(found.map((p) => [p.field, p.line]));
    expect(byField['hosts.0.memoryMiB']).to.equal(4);
    expect(byField['hosts.1.name']).to.equal(5);
    expect(byField['migration.downtimeLimitMs']).to.equal(7);
    expect(found.some((p) => p.message.includes('colour'))).to.equal(true);
  });

  it('refuses duplicate host names and bad listen addresses', () => {
    const found = problems('hosts:\n  - name: a\n  - name: a\n    listen: localhost\n');
    expect(found.map((p) => p.field)).to.include.members(['hosts.1.name', 'hosts.1.listen']);
  });

  it('reports YAML syntax errors with their line', () => {
    const found = problems('hosts:\n  - name: a\n   bad: [\n');
    expect(found[0]!.field).to.equal('(yaml)');
    expect(found[0]!.line).to.be.a('number');
  });

  it('refuses an empty site', () => {
    expect(problems('').map((p) => p.field)).to.include('hosts');
  });
});
