import { join } from 'node:path';
import { expect } from 'chai';
import type { MigrationEvent } from '@motus/sdk';
import { guestKit, requireCommand, tempDir, waitFor } from '../../support/index.js';
import { qemuPidsOf, startSite, type TestSite } from '../../support/site.js';
import { CLIENT_MAC, CLIENT_WORKLOAD, kitVm, migrate, netSiteYaml, SERVER_MAC, SERVER_WORKLOAD, switchFacts, tcpOf, vmInfo } from '../support/net-site.js';
import { countMatching, expertSummary, LoopbackCapture } from '../support/tshark.js';
import { freeUdpPort } from '../support/udp.js';

const HOSTS = ['host-a', 'host-b', 'host-c'];
/** Slack for TCP's retransmission timer (200 ms minimum on Linux, doubling) on top of QEMU's downtime, under TCG on a shared machine. */
const GAP_SLACK_MS = 2_500;
const ANNOUNCE_TIMEOUT_MS = 15_000;

describe('a TCP connection survives live migration (all-in-one site, QEMU, net-virt)', function () {
  this.timeout(900_000);
  let site: TestSite | undefined;
  let capture: LoopbackCapture | undefined;
  const dir = tempDir('nv-e2e');
  const vteps: Record<string, number> = {};

  before(async () => {
    requireCommand('qemu-system-x86_64', 'qemu-system-x86');
    requireCommand('setpriv', 'util-linux');
    requireCommand('tshark', 'tshark');
    guestKit();
    for (const host of HOSTS) vteps[host] = await freeUdpPort();
    capture = await LoopbackCapture.start(join(dir.path, 'uplinks.pcap'), HOSTS.map((h) => `udp port ${vteps[h]}`).join(' or '));
    site = await startSite(netSiteYaml(HOSTS, vteps, ANNOUNCE_TIMEOUT_MS));
  });

  after(async () => {
    await site?.stop();
    await capture?.stop();
    dir.remove();
  });

  it('moves the server guest A → B → A while a client guest on C keeps one connection and every echo', async () => {
    const s = site!;
    await s.client.startVm(kitVm('srv', SERVER_MAC, SERVER_WORKLOAD), 'host-a');
    await s.client.startVm(kitVm('cli', CLIENT_MAC, CLIENT_WORKLOAD), 'host-c');
    const client = await vmInfo(s, 'cli');
    const tcp = () => tcpOf(client);
    await waitFor('the client guest on host-c to get 50 echoes from host-a', () => ((tcp().stats.at(-1)?.echoed ?? 0) >= 50 ? true : undefined), 180_000, 250);

    const report: Array<{ to: string; downtimeMs: number; totalTimeMs: number; announcedMs: number; clientGapMs: number }> = [];
    for (const destination of ['host-b', 'host-a']) {
      const gapsBefore = tcp().gaps.length;
      const echoedBefore = tcp().stats.at(-1)!.echoed;
      const events = await migrate(s, 'srv', destination);
      const types = events.map((e) => e.type);
      expect(types.at(-1), JSON.stringify(events.filter((e) => e.type !== 'progress'))).to.equal('completed');
      expect(types.slice(-3)).to.deep.equal(['resumed', 'announced', 'completed']);
      const announced = events.find((e) => e.type === 'announced') as Extract<MigrationEvent, { type: 'announced' }>;
      const completed = events.at(-1) as Extract<MigrationEvent, { type: 'completed' }>;
      expect(announced.host).to.equal(destination);
      // A failed confirmation is only logged by the kernel once the VM runs on the destination; it would take the whole timeout.
      expect(announced.ms, 'confirmed before the announce timeout').to.be.a('number').and.be.lessThan(ANNOUNCE_TIMEOUT_MS);

      // Every switch reaches the server's MAC through the destination: its port there, the uplink elsewhere.
      await waitFor(`every switch to reach ${SERVER_MAC} through ${destination}`, async () => {
        const hosts = await s.client.hosts();
        const where = Object.fromEntries(hosts.map((h) => [h.name, switchFacts(h)?.macs.find((m) => m.mac === SERVER_MAC)?.location]));
        return HOSTS.every((h) => where[h] === (h === destination ? 'local:srv.n0' : `uplink:${destination}`)) ? where : undefined;
      }, 10_000, 250);
      const hosts = await s.client.hosts();
      const onDestination = switchFacts(hosts.find((h) => h.name === destination)!)!.ports.find((p) => p.id === 'srv.n0')!;
      expect(onDestination.mac).to.equal(SERVER_MAC);
      expect(onDestination.counters.rxFrames).to.be.greaterThan(0);

      await waitFor('echoes to continue after the move', () => ((tcp().stats.at(-1)?.echoed ?? 0) >= echoedBefore + 100 ? true : undefined), 60_000, 250);
      const now = tcp();
      expect(now.errors, 'no reset, no lost or duplicated byte').to.deep.equal([]);
      expect(now.connected, 'one connection, never re-established').to.equal(1);
      const gap = Math.max(0, ...now.gaps.slice(gapsBefore));
      report.push({ to: destination, downtimeMs: completed.downtimeMs, totalTimeMs: completed.totalTimeMs, announcedMs: announced.ms, clientGapMs: gap });
      expect(gap, `the client's longest wait for an echo (QEMU downtime ${completed.downtimeMs} ms)`).to.be.lessThan(completed.downtimeMs + GAP_SLACK_MS);
      expect(await qemuPidsOf('srv')).to.have.length(1);
    }
    console.log('      net-virt e2e:', JSON.stringify(report));

    await capture!.stop();
    const pcap = join(dir.path, 'uplinks.pcap');
    const decode = HOSTS.map((h) => `udp.port==${vteps[h]},vxlan`);
    const rarpFromB = await countMatching(pcap, `vxlan && eth.type == 0x8035 && eth.src == ${SERVER_MAC} && udp.srcport == ${vteps['host-b']}`, decode);
    expect(rarpFromB, "B's uplink carries the server's self-announce RARPs").to.be.greaterThan(0);
    const bad = '_ws.malformed || _ws.expert.severity == error';
    expect(await countMatching(pcap, bad, decode), await expertSummary(pcap, bad, decode)).to.equal(0);
    expect(await countMatching(pcap, 'vxlan && tcp.port == 7000', decode)).to.be.greaterThan(100);

    await s.client.stopVm('srv');
    await s.client.stopVm('cli');
    await waitFor('the guests to end', async () => ((await qemuPidsOf('srv')).length + (await qemuPidsOf('cli')).length === 0 ? true : undefined), 20_000);
  });
});
