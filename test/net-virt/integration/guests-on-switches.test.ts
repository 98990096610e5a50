import { join } from 'node:path';
import { expect } from 'chai';
import { HostSwitch, netVirtConfigSchema, readPcap, parseEthernet } from '@motus/net-virt';
import { guestKit, requireCommand, tempDir, type GuestKit } from '../../support/index.js';
import { NetGuest } from '../support/guest.js';
import { countMatching, LoopbackCapture } from '../../support/packet-capture.js';
import { freeUdpPort } from '../support/udp.js';

const SERVER_MAC = '52:54:00:00:01:0a';
const CLIENT_MAC = '52:54:00:00:01:0b';
const SERVER = ['motus.ip=169.254.0.10/16', 'motus.tcp=server:7000'];
const CLIENT = ['motus.ip=169.254.0.11/16', 'motus.tcp=client:169.254.0.10:7000:20'];


describe('net-virt switches with real QEMU guests', function () {
  this.timeout(600_000);
  let kit: GuestKit;
  const cleanups: Array<() => Promise<void> | void> = [];

  before(() => {
    requireCommand('qemu-system-x86_64', 'qemu-system-x86');
    requireCommand('tshark', 'tshark');
    kit = guestKit();
    expect(kit.manifest.programs).to.include('motus-tcp');
  });

  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  it('two guests on one switch hold a TCP echo connection; a port capture is well-formed Ethernet for tshark', async () => {
    const dir = tempDir('nv-one');
    cleanups.push(() => dir.remove());
    const config = netVirtConfigSchema.parse({ networks: { prod: { vni: 100 } } });
    const sw = await HostSwitch.start('host-a', config, dir.path);
    cleanups.push(() => sw.stop());
    const server = new NetGuest(join(dir.path, 'server.log'), (await sw.attach('srv', { id: 'n0', mac: SERVER_MAC, network: 'prod' })).netdev, SERVER_MAC, SERVER);
    cleanups.push(() => server.stop());
    const client = new NetGuest(join(dir.path, 'client.log'), (await sw.attach('cli', { id: 'n0', mac: CLIENT_MAC, network: 'prod' })).netdev, CLIENT_MAC, CLIENT);
    cleanups.push(() => client.stop());

    // Generous: two TCG guests boot first, on a machine other work shares.
    await client.until('the client guest to get 100 echoes', (tcp) => (tcp.stats.at(-1)?.echoed ?? 0) >= 100 ? true : undefined, 300_000);
    const capturePath = join(dir.path, 'srv.pcap');
    const captured = await sw.capture('srv.n0', capturePath, 2_000);
    expect(captured.frames).to.be.greaterThan(50);
    expect(client.tcp().errors).to.deep.equal([]);
    expect(server.tcp().accepted).to.equal(1);
    expect(await sw.locate(SERVER_MAC)).to.equal('local:srv.n0');
    expect(await sw.locate(CLIENT_MAC)).to.equal('local:cli.n0');

    const back = await readPcap(capturePath);
    expect(back.linkType).to.equal(1);
    expect(back.packets).to.have.length(captured.frames);
    expect(back.packets.every((p) => parseEthernet(p.data) !== undefined)).to.equal(true);
    expect(await countMatching(capturePath, '_ws.malformed || _ws.expert.severity == error')).to.equal(0);
    expect(await countMatching(capturePath, 'tcp.port == 7000 && ip.src == 169.254.0.11')).to.be.greaterThan(20);
    const ports = sw.facts().ports;
    for (const p of ports) expect(p.counters.dropped, p.id).to.equal(0);
  });

  it('guests on two hosts talk through VXLAN uplinks; tshark sees well-formed VXLAN on loopback', async () => {
    const dir = tempDir('nv-two');
    cleanups.push(() => dir.remove());
    const [pa, pb] = [await freeUdpPort(), await freeUdpPort()];
    const config = netVirtConfigSchema.parse({
      networks: { prod: { vni: 4242 }, db: { vni: 4242, vlan: 30 } },
      hosts: { 'host-a': { vtep: `127.0.0.1:${pa}` }, 'host-b': { vtep: `127.0.0.1:${pb}` } },
    });
    const capturePath = join(dir.path, 'lo.pcap');
    const capture = await LoopbackCapture.start(capturePath, `udp port ${pa} or udp port ${pb}`);
    cleanups.push(() => capture.stop());
    const swA = await HostSwitch.start('host-a', config, join(dir.path, 'a'));
    cleanups.push(() => swA.stop());
    const swB = await HostSwitch.start('host-b', config, join(dir.path, 'b'));
    cleanups.push(() => swB.stop());
    const server = new NetGuest(join(dir.path, 'server.log'), (await swA.attach('srv', { id: 'n0', mac: SERVER_MAC, network: 'db' })).netdev, SERVER_MAC, SERVER);
    cleanups.push(() => server.stop());
    const client = new NetGuest(join(dir.path, 'client.log'), (await swB.attach('cli', { id: 'n0', mac: CLIENT_MAC, network: 'db' })).netdev, CLIENT_MAC, CLIENT);
    cleanups.push(() => client.stop());

    await client.until('the client guest to get 100 echoes across the uplink', (tcp) => (tcp.stats.at(-1)?.echoed ?? 0) >= 100 ? true : undefined, 300_000);
    expect(client.tcp().errors).to.deep.equal([]);
    expect(await swA.locate(CLIENT_MAC)).to.equal('uplink:host-b');
    expect(await swB.locate(SERVER_MAC)).to.equal('uplink:host-a');
    expect(swA.locateIn(SERVER_MAC, 'prod')).to.equal(undefined);
    await capture.stop();

    const decode = [`udp.port==${pa},vxlan`, `udp.port==${pb},vxlan`];
    const vxlan = await countMatching(capturePath, 'vxlan', decode);
    expect(vxlan).to.be.greaterThan(100);
    expect(await countMatching(capturePath, 'vxlan.vni == 4242 && vxlan.flag_i == 1 && vxlan.flags_reserved == 0 && vxlan.reserved8 == 0 && vlan.id == 30', decode)).to.equal(vxlan);
    expect(await countMatching(capturePath, 'vxlan && tcp.port == 7000', decode)).to.be.greaterThan(100);
    expect(await countMatching(capturePath, '_ws.malformed || _ws.expert.severity == error', decode)).to.equal(0);
    const facts = swA.facts();
    expect(facts.uplink!.rxMalformed + facts.uplink!.rxUnknownPeer + facts.uplink!.rxUnknownSegment).to.equal(0);
  });
});
