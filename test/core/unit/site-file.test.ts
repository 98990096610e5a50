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
    expect(site.hosts[0]).to.deep.equal({ name: 'host-a', listen: '127.0.0.1:0', migrationAddress: '127.0.0.1', migrationNetwork: 'default', sysRoot: '/sys', migrationTls: true });
    expect(site.server.authFailures).to.deep.equal({ maxFailures: 20, windowSeconds: 60 });
    expect(site.tasks).to.deep.equal({ maxPerHost: 8, maxPerDatastore: 128, highPriorityBurst: 4, missedRunGraceSeconds: 3600 });
    expect(site.networks).to.deep.equal([]);
    expect(site.datastores).to.deep.equal([]);
    expect(site.plugins).to.deep.equal([{ package: '@motus/hv-qemu', config: {} }]);
    expect(site.migration).to.deep.equal({
      maxBandwidthMiBps: 1024,
      downtimeLimitMs: 300,
      timeoutBaseSeconds: 120,
      timeoutSecondsPerGiB: 240,
      switchoverWaitSeconds: 30,
      encryption: 'opportunistic',
      convergence: { switchoverTargetMs: 100, switchoverStepFactor: 1.5, throttleStepPct: 20, throttleMaxPct: 99, xbzrle: 'auto', multifd: 'auto', postcopy: false },
    });
  });

  it('names the field and the line of each problem', () => {
    const found = problems(['site: lab', 'hosts:', '  - name: host-a', '    memoryMiB: -5', '  - name: Host_B', 'migration:', '  downtimeLimitMs: fast', 'colour: blue'].join('\n'));
    const byField = Object.fromEntries(found.map((p) => [p.field, p.line]));
    expect(byField['hosts.0.memoryMiB']).to.equal(4);
    expect(byField['hosts.1.name']).to.equal(5);
    expect(byField['migration.downtimeLimitMs']).to.equal(7);
    expect(found.some((p) => p.message.includes('colour'))).to.equal(true);
  });

  it('takes concurrency limits per site, host, network and datastore, and refuses zero, negative and dangling ones', () => {
    const site = parseSite(
      [
        'hosts:',
        '  - name: host-a',
        '    maxMigrations: 2',
        '    migrationNetwork: fast',
        '  - name: host-b',
        'networks:',
        '  - name: fast',
        '    gbps: 10',
        'datastores:',
        '  - name: nas1',
        '    pathPrefix: /mnt/nas1/',
        '    maxMigrations: 16',
        'tasks:',
        '  maxPerHost: 6',
        '  highPriorityBurst: 2',
      ].join('\n'),
    );
    expect(site.hosts[0]!.maxMigrations).to.equal(2);
    expect(site.hosts[1]!.migrationNetwork).to.equal('default');
    expect(site.tasks.maxPerHost).to.equal(6);
    expect(site.datastores[0]!.maxMigrations).to.equal(16);
    const found = problems(['hosts:', '  - name: host-a', '    maxMigrations: 0', 'tasks:', '  maxPerHost: -1', '  maxPerDatastore: 0', 'datastores:', '  - name: d', '    pathPrefix: /x', '    maxMigrations: -3'].join('\n'));
    const byField = Object.fromEntries(found.map((p) => [p.field, p.line]));
    expect(byField['hosts.0.maxMigrations']).to.equal(3);
    expect(byField['tasks.maxPerHost']).to.equal(5);
    expect(byField['tasks.maxPerDatastore']).to.equal(6);
    expect(byField['datastores.0.maxMigrations']).to.equal(10);
    const dangling = problems('hosts:\n  - name: host-a\n    migrationNetwork: nowhere\n');
    expect(dangling.map((p) => [p.field, p.line])).to.deep.equal([['hosts.0.migrationNetwork', 3]]);
    expect(dangling[0]!.message).to.include("no network named 'nowhere'");
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
