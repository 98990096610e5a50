import { expect } from 'chai';
import type { HostInfo, VmInfo } from '@motus/sdk';
import { destinationVeto } from '@motus/net-virt';

const P = '@motus/net-virt';
const vm = { name: 'srv', spec: { name: 'srv', memoryMiB: 128, vcpus: 1, nics: [{ id: 'n0', mac: '52:54:00:00:00:01', network: 'prod' }] } } as unknown as VmInfo;
const host = (plugins: Record<string, unknown>) => ({ name: 'host-b', plugins }) as unknown as HostInfo;

describe('net-virt validate: the destination switch', () => {
  it('accepts a destination with the network and an uplink', () => {
    expect(destinationVeto(P, vm, host({ [P]: { networks: [{ name: 'prod', vni: 1 }], uplink: { peers: ['host-a'] } } }), true)).to.equal(undefined);
  });

  it('vetoes a destination without net-virt facts, without the network, or without an uplink when the site has them', () => {
    const none = destinationVeto(P, vm, host({}), true)!;
    expect(none.code).to.equal('MOTUS_E_NET_NOT_ON_HOST');
    const missing = destinationVeto(P, vm, host({ [P]: { networks: [{ name: 'lab', vni: 2 }], uplink: {} } }), true)!;
    expect(missing.reason).to.match(/no network 'prod'.*NIC n0/);
    expect(missing.data).to.include({ network: 'prod', host: 'host-b' });
    const isolated = destinationVeto(P, vm, host({ [P]: { networks: [{ name: 'prod', vni: 1 }] } }), true)!;
    expect(isolated.reason).to.match(/no VXLAN uplink/);
    expect(destinationVeto(P, vm, host({ [P]: { networks: [{ name: 'prod', vni: 1 }] } }), false)).to.equal(undefined);
  });

  it('leaves VMs without NICs alone', () => {
    const bare = { ...vm, spec: { ...vm.spec, nics: [] } } as VmInfo;
    expect(destinationVeto(P, bare, host({}), true)).to.equal(undefined);
  });
});
