import { createConnection, type Socket } from 'node:net';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { expect } from 'chai';
import { encodeFrame, encodeVxlan, FrameDecoder, HostSwitch, netVirtConfigSchema, publishSwitchMetrics } from '@motus/net-virt';
import { MetricsRegistry } from '@motus/core';
import { join } from 'node:path';
import { isMotusError } from '@motus/sdk';
import { parseExposition, tempDir, valueOf, waitFor } from '../../support/index.js';
import { BROADCAST, ethFrame } from '../support/frames.js';
import { prng } from '../../support/index.js';
import { freeUdpPort } from '../support/udp.js';

const SENDER = '02:00:00:00:03:01';
const RECEIVER = '02:00:00:00:03:02';

/** A test-side port client speaking QEMU's stream framing, as QEMU would. */
class PortClient {
  readonly frames: Buffer[] = [];
  private readonly decoder = new FrameDecoder();
  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => this.frames.push(...this.decoder.push(chunk).frames));
  }
  static async connect(netdev: string): Promise<PortClient> {
    const path = /addr\.path=([^,]+)/.exec(netdev)![1]!;
    const socket = createConnection(path);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new PortClient(socket);
  }
  send(frame: Buffer): boolean {
    return this.socket.write(encodeFrame(frame));
  }
}

describe('net-virt switch on real sockets: stalled ports and bad input', function () {
  this.timeout(120_000);
  let dir: ReturnType<typeof tempDir>;
  let sw: HostSwitch;
  let peer: UdpSocket;
  let stranger: UdpSocket;
  let vtep: number;
  const clients: PortClient[] = [];

  beforeEach(async () => {
    dir = tempDir('nv-sock');
    vtep = await freeUdpPort();
    const peerPort = await freeUdpPort();
    peer = createSocket('udp4');
    await new Promise<void>((resolve) => peer.bind(peerPort, '127.0.0.1', () => resolve()));
    stranger = createSocket('udp4');
    await new Promise<void>((resolve) => stranger.bind(0, '127.0.0.1', () => resolve()));
    const config = netVirtConfigSchema.parse({
      networks: { prod: { vni: 77 } },
      hosts: { 'host-a': { vtep: `127.0.0.1:${vtep}` }, peer: { vtep: `127.0.0.1:${peerPort}` } },
      macTableSize: 16,
      portQueueFrames: 64,
    });
    sw = await HostSwitch.start('host-a', config, dir.path);
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.socket.destroy();
    await sw.stop();
    peer.close();
    stranger.close();
    dir.remove();
  });

  async function port(vm: string, mac: string): Promise<PortClient> {
    const client = await PortClient.connect((await sw.attach(vm, { id: 'n0', mac, network: 'prod' })).netdev);
    clients.push(client);
    return client;
  }

  /** Sends `count` 1,500-byte broadcasts in batches, each batch delivered to `to` before the next; frames/s. */
  async function pump(from: PortClient, to: PortClient, count: number): Promise<number> {
    const start = to.frames.length;
    const t0 = performance.now();
    for (let sent = 0; sent < count; ) {
      const batch = Math.min(200, count - sent);
      for (let i = 0; i < batch; i++) from.send(ethFrame(BROADCAST, SENDER, 1500, 0x88b5, (sent + i) & 0xff));
      sent += batch;
      await waitFor(`${sent} frames at the receiver`, () => (to.frames.length - start >= sent ? true : undefined), 10_000, 1);
    }
    return count / ((performance.now() - t0) / 1000);
  }

  it('a port that never reads does not slow frames between two others; only its own queue drops', async () => {
    const sender = await port('a', SENDER);
    const receiver = await port('b', RECEIVER);
    const third = await port('c', '02:00:00:00:03:03');
    await waitFor('three connected ports', () => (sw.facts().ports.filter((p) => p.connected).length === 3 ? true : undefined), 5_000, 10);
    const reading = await pump(sender, receiver, 5_000);
    third.socket.pause();
    const stalled = await pump(sender, receiver, 20_000);
    const facts = Object.fromEntries(sw.facts().ports.map((p) => [p.id, p.counters]));
    console.log(`      frames/s to the receiver: ${Math.round(reading)} with three reading ports, ${Math.round(stalled)} with one stalled (${facts['c.n0']!.dropped} dropped at it)`);
    expect(receiver.frames).to.have.length(25_000);
    expect(receiver.frames.slice(5_000).every((f, i) => f[20] === (i & 0xff)), 'in order').to.equal(true);
    expect(facts['b.n0']!.dropped).to.equal(0);
    expect(facts['c.n0']!.dropped).to.be.greaterThan(10_000);
    expect(facts['c.n0']!.queuedFrames).to.be.at.most(64);
    expect(stalled).to.be.greaterThan(reading * 0.3);

    // The same counters on the agent's /metrics, per port.
    const registry = new MetricsRegistry();
    publishSwitchMetrics(registry.forPlugin('@motus/net-virt'), sw.sw);
    const metrics = parseExposition(await registry.exposition());
    expect(valueOf(metrics, 'motus_vswitch_frames_total', { port: 'a.n0', network: 'prod', direction: 'rx' })).to.equal(25_000);
    expect(valueOf(metrics, 'motus_vswitch_frames_total', { port: 'b.n0', network: 'prod', direction: 'tx' })).to.equal(25_000);
    expect(valueOf(metrics, 'motus_vswitch_dropped_frames_total', { port: 'c.n0', network: 'prod', direction: 'tx' })).to.equal(facts['c.n0']!.dropped);
    expect(valueOf(metrics, 'motus_vswitch_dropped_frames_total', { port: 'b.n0', network: 'prod', direction: 'tx' })).to.equal(0);
    expect(valueOf(metrics, 'motus_vswitch_bytes_total', { port: 'a.n0', network: 'prod', direction: 'rx' })).to.equal(25_000 * 1500);
  });

  it('drops and counts empty, runt, oversize and cut-short frames, garbage and a desynchronised stream, and keeps forwarding', async () => {
    const sender = await port('a', SENDER);
    const receiver = await port('b', RECEIVER);
    const lengths = (n: number) => {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(n);
      return b;
    };
    sender.socket.write(Buffer.concat([lengths(0), lengths(5), Buffer.alloc(5), lengths(70_000), Buffer.alloc(70_000), encodeFrame(ethFrame(BROADCAST, SENDER, 64, 0x88b5, 1))]));
    await waitFor('the good frame after bad ones', () => (receiver.frames.length === 1 ? true : undefined), 5_000, 10);
    expect(sw.facts().ports.find((p) => p.id === 'a.n0')!.counters.rxDropped).to.equal(3);

    // A frame cut short by its sender going away, then a stream of nonsense lengths: the port is closed, the switch goes on.
    sender.socket.end(Buffer.concat([lengths(1000), Buffer.alloc(100)]));
    const again = await PortClient.connect((await sw.attach('a2', { id: 'n0', mac: '02:00:00:00:03:04', network: 'prod' })).netdev);
    clients.push(again);
    again.socket.write(Buffer.concat([lengths(0xffff_fff0), Buffer.alloc(64)]));
    await waitFor('the switch to close the desynchronised connection', () => (again.socket.destroyed || again.socket.readableEnded ? true : undefined), 5_000, 10);
    const third = await port('c', '02:00:00:00:03:05');
    third.send(ethFrame(BROADCAST, '02:00:00:00:03:05', 64, 0x88b5, 2));
    await waitFor('forwarding to go on', () => (receiver.frames.length === 2 ? true : undefined), 5_000, 10);

    // Garbage on the VXLAN socket: short, without the I flag, from an address that is no peer.
    const send = (s: UdpSocket, b: Buffer) => new Promise<void>((resolve) => s.send(b, vtep, '127.0.0.1', () => resolve()));
    await send(peer, Buffer.alloc(3));
    await send(peer, Buffer.alloc(40));
    await send(stranger, encodeVxlan(77, ethFrame(BROADCAST, '02:00:00:00:09:09')));
    await send(peer, encodeVxlan(78, ethFrame(BROADCAST, '02:00:00:00:09:0a')));
    await send(peer, encodeVxlan(77, ethFrame(BROADCAST, '02:00:00:00:09:0b', 64, 0x88b5, 3)));
    await waitFor('the valid VXLAN frame', () => (receiver.frames.length === 3 ? true : undefined), 5_000, 10);
    const uplink = sw.facts().uplink!;
    expect(uplink).to.include({ rxMalformed: 2, rxUnknownPeer: 1, rxUnknownSegment: 1 });
    expect(await sw.locate('02:00:00:00:09:0b')).to.equal('uplink:peer');
  });

  it('a port flooding random source MACs recycles its own table entries; the others stay learned', async () => {
    const flooder = await port('a', SENDER);
    const receiver = await port('b', RECEIVER);
    const quiet = await port('c', '02:00:00:00:03:06');
    quiet.send(ethFrame(BROADCAST, '02:00:00:00:03:06'));
    receiver.send(ethFrame(BROADCAST, RECEIVER));
    await waitFor('two MACs learned', () => (sw.facts().macTable.entries === 2 ? true : undefined), 5_000, 10);
    const next = prng(99);
    for (let i = 0; i < 2_000; i++) {
      const src = `0a:${[0, 0, 0, 0, 0].map(() => Math.floor(next() * 256).toString(16).padStart(2, '0')).join(':')}`;
      flooder.send(ethFrame(RECEIVER, src, 64));
    }
    await waitFor('the switch to take the whole flood', () => (sw.facts().ports.find((p) => p.id === 'a.n0')!.counters.rxFrames >= 2_000 ? true : undefined), 10_000, 10);
    const b = sw.facts().ports.find((p) => p.id === 'b.n0')!.counters;
    expect(b.txFrames + b.dropped + b.queuedFrames, 'every flooded frame went to the receiver').to.equal(2_001);
    expect(await sw.locate(RECEIVER)).to.equal('local:b.n0');
    expect(await sw.locate('02:00:00:00:03:06')).to.equal('local:c.n0');
    const table = sw.facts().macTable;
    expect(table.entries).to.equal(16);
    expect(table.evicted).to.be.greaterThan(1_900);
    // Known unicast: the flood went to the receiver alone, not to the quiet port.
    expect(quiet.frames.filter((f) => f.readUInt16BE(12) === 0x88b5 && f[0] !== 0xff)).to.have.length(0);
  });

  it('refuses a port whose socket path is too long, and a second switch on a bound VXLAN address, with coded errors', async () => {
    const deep = join(dir.path, 'x'.repeat(90));
    const config = netVirtConfigSchema.parse({ networks: { prod: { vni: 77 } } });
    const local = await HostSwitch.start('host-z', config, deep);
    try {
      await local.attach('vm', { id: 'n0', mac: '02:00:00:00:03:07', network: 'prod' });
      expect.fail('attach should have failed');
    } catch (err) {
      expect(isMotusError(err, 'MOTUS_E_NET_PORT'), String(err)).to.equal(true);
      expect(local.facts().ports).to.deep.equal([]);
    } finally {
      await local.stop();
    }
    const clash = netVirtConfigSchema.parse({ networks: { prod: { vni: 77 } }, hosts: { 'host-a': { vtep: `127.0.0.1:${vtep}` } } });
    try {
      await HostSwitch.start('host-a', clash, join(dir.path, 'clash'));
      expect.fail('the second bind should have failed');
    } catch (err) {
      expect(isMotusError(err, 'MOTUS_E_NET_UPLINK'), String(err)).to.equal(true);
      expect((err as Error).message).to.include(`127.0.0.1:${vtep}`);
    }
  });
});
