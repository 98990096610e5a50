import { expect } from 'chai';
import { MotusError } from '@motus/sdk';
import { parseSite } from '@motus/core';

function problems(text: string): Array<{ field: string; line?: number; message: string }> {
  try {
    parseSite(text, 'site.yaml');
  } catch (err) {
    expect((err as MotusError).code).to.equal('MOTUS_E_SITE_INVALID');
    return (err as MotusError).data.problems as never;
  }
  return expect.fail('expected the site to be refused') as never;
}

const HOSTS = ['hosts:', '  - name: host-a', '    memoryMiB: 2048', '  - name: host-b', '    memoryMiB: 2048', '  - name: host-c', '    memoryMiB: 2048'];

describe('placement section of the site file', () => {
  it('takes clusters, pools, rules and a health policy, with defaults', () => {
    const site = parseSite(
      [
        ...HOSTS,
        'placement:',
        '  clusters:',
        '    - name: prod',
        '      hosts: [host-a, host-b, host-c]',
        '      balancing: { mode: automatic, threshold: 4, intervalSeconds: 30 }',
        '  pools:',
        '    - name: gold',
        '      shares: high',
        '      reservation: { memoryMiB: 1024, cpus: 1 }',
        '      limit: { cpus: 4 }',
        "      vms: ['web-*']",
        '  rules:',
        '    - { name: spread, kind: anti-affinity, vms: [web-1, web-2] }',
        '    - { name: pair, kind: affinity, vms: [app, db] }',
        '    - { name: pin, kind: vm-host, vms: [db], hosts: [host-a, host-b] }',
      ].join('\n'),
    );
    expect(site.placement.clusters[0]!.balancing).to.deep.equal({ mode: 'automatic', threshold: 4, intervalSeconds: 30, maxMovesPerPass: 8, maxMiBPerPass: 65536 });
    expect(site.placement.pools[0]).to.include({ name: 'gold', shares: 'high' });
    expect(site.placement.rules[2]).to.deep.include({ mode: 'must' });
    expect(site.placement.health).to.deep.equal({ missedHeartbeats: 2, overloadCpu: 0.95, overloadSeconds: 120, thermalMaxCelsius: 95, eccCorrectableMax: 100, onDegraded: 'evacuate' });
    expect(site.placement.metricsIntervalSeconds).to.equal(2);
  });

  it('refuses unknown hosts in clusters and rules, and a host in two clusters, naming field and line', () => {
    const found = problems(
      [
        ...HOSTS,
        'placement:',
        '  clusters:',
        '    - { name: one, hosts: [host-a, host-z] }',
        '    - { name: two, hosts: [host-a, host-b] }',
        '  rules:',
        '    - { name: pin, kind: vm-host, vms: [db], hosts: [host-q] }',
      ].join('\n'),
    );
    const byField = Object.fromEntries(found.map((p) => [p.field, p]));
    expect(byField['placement.clusters.0.hosts.1']!.message).to.equal("no host named 'host-z' in hosts");
    expect(byField['placement.clusters.0.hosts.1']!.line).to.equal(10);
    expect(byField['placement.clusters.1.hosts.0']!.message).to.equal("host 'host-a' is already in cluster 'one'; a host belongs to one cluster");
    expect(byField['placement.rules.0.hosts.0']!.message).to.equal("no host named 'host-q' in hosts");
  });

  it('refuses rules that contradict each other', () => {
    const found = problems(
      [
        ...HOSTS,
        'placement:',
        '  rules:',
        '    - { name: together, kind: affinity, vms: [a, b] }',
        '    - { name: chain, kind: affinity, vms: [b, c] }',
        '    - { name: apart, kind: anti-affinity, vms: [a, c] }',
        '    - { name: on-a, kind: vm-host, vms: [x], hosts: [host-a] }',
        '    - { name: off-a, kind: vm-host, mode: must-not, vms: [x], hosts: [host-a] }',
        '    - { name: too-many, kind: anti-affinity, vms: [p, q, r, s] }',
        '    - { name: pin-p, kind: vm-host, vms: [p], hosts: [host-a] }',
        '    - { name: pin-q, kind: vm-host, vms: [q], hosts: [host-b] }',
        '    - { name: pair2, kind: affinity, vms: [p, q] }',
      ].join('\n'),
    );
    const messages = found.map((p) => `${p.field}: ${p.message}`);
    expect(messages).to.include("placement.rules.2.vms: rule 'apart' keeps a and c apart, but affinity rule 'chain' keeps them together");
    expect(messages).to.include("placement.rules.4: VM x can run on no host: rules 'on-a', 'off-a' leave none");
    expect(messages).to.include('placement.rules.5.vms: rule \'too-many\' keeps 4 VMs apart but they may run on only 3 host(s)');
    expect(messages.some((m) => /VMs p, q must run together, but their vm-host rules give them no host in common/.test(m))).to.equal(true);
  });

  it('refuses reservations above what the cluster offers, above their own limit, or on hosts of unknown size', () => {
    const over = problems(
      [
        ...HOSTS,
        'placement:',
        '  pools:',
        '    - { name: gold, reservation: { memoryMiB: 4096 } }',
        '    - { name: silver, reservation: { memoryMiB: 3000, cpus: 8 }, limit: { cpus: 2 } }',
      ].join('\n'),
    );
    const messages = over.map((p) => `${p.field}: ${p.message}`);
    expect(messages).to.include("placement.pools.0.reservation.memoryMiB: pools of cluster 'default' reserve 7096 MiB (gold 4096, silver 3000) but its hosts offer 6144 MiB");
    expect(messages).to.include("placement.pools.1.reservation.cpus: pool 'silver' reserves 8 CPUs but is limited to 2: a reservation cannot exceed the limit");
    const unsized = problems(['hosts:', '  - name: host-a', 'placement:', '  pools:', '    - { name: gold, reservation: { memoryMiB: 10 } }'].join('\n'));
    expect(unsized[0]!.message).to.match(/its hosts need memoryMiB to check it fits \(missing on host-a\)/);
    const ambiguous = problems([...HOSTS, 'placement:', '  clusters:', '    - { name: one, hosts: [host-a] }', '  pools:', '    - { name: p }'].join('\n'));
    expect(ambiguous[0]).to.include({ field: 'placement.pools.0.cluster' });
    expect(ambiguous[0]!.message).to.match(/the site has 2 clusters \(one, default\)/);
  });
});
