import { expect } from 'chai';
import { isMotusError } from '@motus/sdk';
import { confirmRelocation, netVirtConfigSchema } from '@motus/net-virt';

const nic = { id: 'n0', mac: '52:54:00:00:00:01', network: 'prod' };

describe('net-virt announce confirmation', () => {
  it('polls until every switch reaches the MAC through the destination', async () => {
    let calls = 0;
    const result = await confirmRelocation({
      nics: [nic],
      destination: 'host-b',
      hosts: ['host-a', 'host-b', 'host-c'],
      timeoutMs: 2_000,
      pollMs: 10,
      locate: async (host) => {
        calls++;
        if (host === 'host-b') return 'local:vm.n0';
        // host-a still points at its old local port for the first polls.
        return host === 'host-a' && calls < 7 ? 'local:vm.n0' : 'uplink:host-b';
      },
    });
    expect(result.polls).to.be.greaterThan(1);
  });

  it('fails with a coded error naming the MAC and the switches that disagree', async () => {
    try {
      await confirmRelocation({
        nics: [nic],
        destination: 'host-b',
        hosts: ['host-a', 'host-b', 'host-c'],
        timeoutMs: 200,
        pollMs: 20,
        locate: async (host) => {
          if (host === 'host-c') throw new Error('agent unreachable');
          return host === 'host-b' ? undefined : 'uplink:host-b';
        },
      });
      expect.fail('should have failed');
    } catch (err) {
      expect(isMotusError(err, 'MOTUS_E_NET_RELOCATION_UNCONFIRMED')).to.equal(true);
      const data = (err as { data: { mac: string; disagreements: Array<{ host: string }> } }).data;
      expect(data.mac).to.equal('52:54:00:00:00:01');
      expect(data.disagreements.map((d) => d.host).sort()).to.deep.equal(['host-b', 'host-c']);
      expect((err as Error).message).to.match(/host-b \(MAC unknown, expected local:<port>\).*host-c \(agent unreachable/);
    }
  });
});

describe('net-virt config schema', () => {
  it('fills defaults', () => {
    const c = netVirtConfigSchema.parse({ networks: { prod: { vni: 100 } } });
    expect(c).to.include({ macAgingSeconds: 300, announceTimeoutMs: 10_000 });
    expect(c.hosts).to.deep.equal({});
  });

  it('refuses a bad VTEP address, a VNI out of range, two networks on one segment, and unknown keys', () => {
    const bad = [
      { networks: { prod: { vni: 100 } }, hosts: { a: { vtep: 'localhost:4789' } } },
      { networks: { prod: { vni: 1 << 24 } } },
      { networks: { prod: { vni: 100, vlan: 5 }, db: { vni: 100, vlan: 5 } } },
      { networks: { prod: { vni: 100 } }, agingSeconds: 3 },
      { networks: { prod: { vni: 100 } }, hosts: { a: { vtep: '127.0.0.1:5000' }, b: { vtep: '127.0.0.1:5000' } } },
    ];
    for (const input of bad) expect(netVirtConfigSchema.safeParse(input).success, JSON.stringify(input)).to.equal(false);
  });
});
