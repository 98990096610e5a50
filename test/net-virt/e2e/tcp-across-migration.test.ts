import { join } from 'node:path';
import { Writable } from 'node:stream';
import { expect } from 'chai';
import { runCli } from '@motus/core';
import type { HostNetworkStats, MigrationEvent } from '@motus/sdk';
import { guestKit, requireCommand, tempDir, waitFor } from '../../support/index.js';
import { qemuPidsOf, startSite, type TestSite } from '../../support/site.js';
import { CLIENT_MAC, CLIENT_WORKLOAD, kitVm, migrate, netSiteYaml, SERVER_MAC, SERVER_WORKLOAD, switchFacts, tcpOf, vmInfo } from '../support/net-site.js';
import { countMatching, expertSummary, LoopbackCapture, tshark } from '../../support/packet-capture.js';
import { freeUdpPort } from '../support/udp.js';

const HOSTS = ['host-a', 'host-b', 'host-c'];
/** Slack for TCP's retransmission timer (200 ms minimum on Linux, doubling) on top of QEMU's downtime, under TCG on a shared machine. */
const GAP_SLACK_MS = 2_500;
const ANNOUNCE_TIMEOUT_MS = 15_000;
/** Long enough to cover a whole move under TCG on a shared machine. */
const MOTUS_CAPTURE_S = 40;

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: string, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

async function motus(site: TestSite, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await runCli([...args, '--state', site.stateDir], { stdout, stderr, env: {} });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

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

    const report: Array<{ to: string; downtimeMs: number; totalTimeMs: number; announcedMs: number; clientGapMs: number; holdMs: number | null; held: number }> = [];
    // Motus's own capture of B's uplink (`motus net capture`), running across the first move.
    const motusPcap = join(dir.path, 'uplink-b.pcap');
    const uplinkCapture = motus(s, 'net', 'capture', 'uplink', '--host', 'host-b', '--out', motusPcap, '--duration', String(MOTUS_CAPTURE_S), '--json');
    let firstMove: { preparedAt: number; completedAt: number } | undefined;
    for (const destination of ['host-b', 'host-a']) {
      const source = destination === 'host-b' ? 'host-a' : 'host-b';
      const holdBefore = switchFacts((await s.client.hosts()).find((h) => h.name === source)!)!.switchover;
      const gapsBefore = tcp().gaps.length;
      const echoedBefore = tcp().stats.at(-1)!.echoed;
      const events = await migrate(s, 'srv', destination);
      const types = events.map((e) => e.type);
      firstMove ??= { preparedAt: Date.parse(events.find((e) => e.type === 'prepared')!.at), completedAt: Date.parse(events.at(-1)!.at) };
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
      // The client sends every 20 ms: frames reached the source switch for the stopped
      // server; it held them and sent every one to the destination, none dropped.
      const hold = switchFacts(hosts.find((h) => h.name === source)!)!.switchover;
      expect(hold.held - holdBefore.held, 'frames held for the stopped source').to.be.greaterThan(0);
      expect(hold.redelivered - holdBefore.redelivered, 'every held frame delivered at the destination').to.equal(hold.held - holdBefore.held);
      expect([hold.dropped, hold.holding]).to.deep.equal([holdBefore.dropped, 0]);
      report.push({ to: destination, downtimeMs: completed.downtimeMs, totalTimeMs: completed.totalTimeMs, announcedMs: announced.ms, clientGapMs: gap, holdMs: hold.lastHoldMs, held: hold.held - holdBefore.held });
      expect(gap, `the client's longest wait for an echo (QEMU downtime ${completed.downtimeMs} ms)`).to.be.lessThan(completed.downtimeMs + GAP_SLACK_MS);
      expect(await qemuPidsOf('srv')).to.have.length(1);
    }
    console.log('      net-virt e2e:', JSON.stringify(report));

    // `motus net capture` of B's uplink: the server's RARPs right after the switchover, dissected without a malformed frame.
    const captured = await uplinkCapture;
    expect(captured.code, captured.stderr).to.equal(0);
    expect(JSON.parse(captured.stdout)).to.deep.include({ target: 'uplink', kind: 'uplink', hosts: ['host-b'] });
    const rarps = (await tshark(['-r', motusPcap, '-Y', `eth.type == 0x8035 && eth.src == ${SERVER_MAC}`, '-T', 'fields', '-e', 'frame.time_epoch'])).split('\n').filter(Boolean).map(Number);
    expect(rarps.length, "Motus's capture of B's uplink carries the server's RARPs").to.be.greaterThan(0);
    // The destination announces itself when it starts running: inside the first move's switchover, before it completed.
    expect(rarps[0]! * 1000, 'the first RARP on B falls between the destination being prepared and the move completing').to.be.within(firstMove!.preparedAt, firstMove!.completedAt);
    const malformed = '_ws.malformed || _ws.expert.severity == error';
    expect(await countMatching(motusPcap, malformed), await expertSummary(motusPcap, malformed)).to.equal(0);
    expect(await countMatching(motusPcap, `tcp.port == 7000 && eth.dst == ${SERVER_MAC}`)).to.be.greaterThan(10);

    // `motus net show`: every switch, its ports with counters, uplink, table size.
    const shown = await motus(s, 'net', 'show', '--json');
    expect(shown.code, shown.stderr).to.equal(0);
    const stats = JSON.parse(shown.stdout) as HostNetworkStats[];
    expect(stats.map((h) => [h.host, h.plugin, h.error])).to.deep.equal(HOSTS.map((h) => [h, '@motus/net-virt', undefined]));
    const srvPort = stats.find((h) => h.host === 'host-a')!.switch!.ports.find((p) => p.id === 'srv.n0')!;
    expect(srvPort).to.deep.include({ network: 'prod', mac: SERVER_MAC, connected: true });
    expect(srvPort.counters.rxFrames).to.be.greaterThan(0);
    expect(srvPort.counters.txBytes).to.be.greaterThan(0);
    expect(stats.every((h) => h.switch!.uplink!.rxFrames > 0 && h.switch!.macTable.entries >= 2)).to.equal(true);
    const human = await motus(s, 'net', 'show');
    expect(human.stdout).to.match(/host-c\s+cli\.n0\s+prod/).and.match(/uplink/).and.match(/mac-table/);

    // A network captured on every host, merged into one file: frames of both guests.
    const prodPcap = join(dir.path, 'prod.pcap');
    const prod = await motus(s, 'net', 'capture', 'prod', '--out', prodPcap, '--duration', '3', '--json');
    expect(prod.code, prod.stderr).to.equal(0);
    expect(JSON.parse(prod.stdout)).to.deep.include({ kind: 'network', hosts: HOSTS });
    expect(await countMatching(prodPcap, `tcp.port == 7000 && eth.src == ${SERVER_MAC}`)).to.be.greaterThan(10);
    expect(await countMatching(prodPcap, `tcp.port == 7000 && eth.src == ${CLIENT_MAC}`)).to.be.greaterThan(10);
    expect(await countMatching(prodPcap, malformed)).to.equal(0);

    // Bad requests: coded errors, nothing written.
    const noPort = await motus(s, 'net', 'capture', 'srv.n9', '--out', join(dir.path, 'x.pcap'), '--duration', '1');
    expect([noPort.code, noPort.stderr]).to.satisfy(([code, err]: [number, string]) => code === 3 && err.includes('MOTUS_E_NOT_FOUND'));
    const noHost = await motus(s, 'net', 'capture', 'uplink', '--out', join(dir.path, 'x.pcap'), '--duration', '1');
    expect([noHost.code, noHost.stderr.includes('MOTUS_E_INVALID_REQUEST')]).to.deep.equal([2, true]);
    await s.client.netCapture({ target: 'prod', durationMs: 0 }).then(
      () => expect.fail('a zero-length capture is refused'),
      (err: { code: string }) => expect(err.code).to.equal('MOTUS_E_INVALID_REQUEST'),
    );

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
