import { expect } from 'chai';
import { PortQueue, VirtualSwitch, encodeFrame, parseEthernet, pushVlanTag, type UplinkTransport } from '@motus/net-virt';
import { BROADCAST, ethFrame, RecordingSink } from '../support/frames.js';

const A = '02:00:00:00:00:0a';
const B = '02:00:00:00:00:0b';
const C = '02:00:00:00:00:0c';

class RecordingUplink implements UplinkTransport {
  sent: Array<{ host: string; vni: number; frame: Buffer }> = [];
  constructor(private readonly names: string[]) {}
  peers() {
    return this.names;
  }
  send(host: string, vni: number, frame: Buffer) {
    this.sent.push({ host, vni, frame });
  }
}

function makeSwitch(uplink?: UplinkTransport, queue = { maxFrames: 4, maxBytes: 1 << 20 }) {
  const sw = new VirtualSwitch({
    networks: [{ name: 'prod', vni: 100 }, { name: 'db', vni: 100, vlan: 20 }, { name: 'lab', vni: 200 }],
    macTableSize: 64,
    macAgingMs: 300_000,
    queue,
    ...(uplink ? { uplink } : {}),
  });
  const sinks = new Map<string, RecordingSink>();
  const port = (id: string, network: string) => {
    sw.addPort(id, network);
    const sink = new RecordingSink();
    sw.connectPort(id, sink);
    sinks.set(id, sink);
    return sink;
  };
  return { sw, port, sinks };
}

describe('net-virt virtual switch', () => {
  it('floods broadcast and unknown unicast within the network only, then forwards learned unicast to one port', () => {
    const { sw, port } = makeSwitch();
    const pa = port('a', 'prod');
    const pb = port('b', 'prod');
    const pc = port('c', 'lab');
    const pd = port('d', 'db');
    sw.fromPort('a', ethFrame(BROADCAST, A));
    expect(pb.frames()).to.have.length(1);
    expect(pa.frames()).to.have.length(0);
    expect(pc.frames()).to.have.length(0);
    expect(pd.frames()).to.have.length(0);
    sw.fromPort('b', ethFrame(C, B));
    expect(pa.frames()).to.have.length(1);
    sw.fromPort('b', ethFrame(A, B));
    expect(pa.frames()).to.have.length(2);
    expect(pb.frames()).to.have.length(1);
    expect(sw.locate(A, 'prod')).to.equal('local:a');
    expect(sw.locate(A, 'db')).to.equal(undefined);
  });

  it('sends length-prefixed frames to the port sockets', () => {
    const { sw, port } = makeSwitch();
    port('a', 'prod');
    const pb = port('b', 'prod');
    const frame = ethFrame(BROADCAST, A, 100);
    sw.fromPort('a', frame);
    expect(pb.written[0]!.equals(encodeFrame(frame))).to.equal(true);
  });

  it('refuses tagged frames and group source MACs from access ports, counting them', () => {
    const { sw, port } = makeSwitch();
    const pa = port('a', 'prod');
    const pb = port('b', 'prod');
    const tagged = ethFrame(BROADCAST, A, 64, 0x8100);
    sw.fromPort('a', tagged);
    sw.fromPort('a', ethFrame(BROADCAST, '01:00:00:00:00:01'));
    expect(pb.frames()).to.have.length(0);
    expect(pa.frames()).to.have.length(0);
    expect(sw.portInfo().find((p) => p.id === 'a')!.counters.rxDropped).to.equal(2);
  });

  it('a port that does not read fills its own queue only: the others keep getting every frame', () => {
    const { sw, port } = makeSwitch(undefined, { maxFrames: 4, maxBytes: 1 << 20 });
    port('a', 'prod');
    const pb = port('b', 'prod');
    const stalled = port('stalled', 'prod');
    stalled.writableNeedDrain = true;
    for (let i = 0; i < 1000; i++) sw.fromPort('a', ethFrame(BROADCAST, A, 64, 0x88b5, i & 0xff));
    expect(pb.frames()).to.have.length(1000);
    const info = sw.portInfo().find((p) => p.id === 'stalled')!;
    expect(info.counters.queuedFrames).to.equal(4);
    expect(info.counters.dropped).to.equal(996);
    expect(sw.portInfo().find((p) => p.id === 'b')!.counters.dropped).to.equal(0);
    // Once it reads again, the queued frames go out in order.
    stalled.writableNeedDrain = false;
    sw.drainPort('stalled');
    expect(stalled.frames().map((f) => f[20])).to.deep.equal([0, 1, 2, 3]);
  });

  it('floods to every peer over the uplink with the network VNI, tagging VLAN networks', () => {
    const uplink = new RecordingUplink(['host-b', 'host-c']);
    const { sw, port } = makeSwitch(uplink);
    port('a', 'prod');
    port('d', 'db');
    sw.fromPort('a', ethFrame(BROADCAST, A));
    sw.fromPort('d', ethFrame(BROADCAST, B));
    expect(uplink.sent.map((s) => [s.host, s.vni, parseEthernet(s.frame)?.vlan])).to.deep.equal([
      ['host-b', 100, undefined],
      ['host-c', 100, undefined],
      ['host-b', 100, 20],
      ['host-c', 100, 20],
    ]);
  });

  it('learns remote MACs on the uplink, strips the VLAN tag towards access ports, and never sends uplink frames back out', () => {
    const uplink = new RecordingUplink(['host-b', 'host-c']);
    const { sw, port } = makeSwitch(uplink);
    const pd = port('d', 'db');
    const pa = port('a', 'prod');
    sw.fromUplink('host-b', 100, pushVlanTag(ethFrame(BROADCAST, C), 20));
    expect(pd.frames()).to.have.length(1);
    expect(parseEthernet(pd.frames()[0]!)!.vlan).to.equal(undefined);
    expect(pa.frames()).to.have.length(0);
    expect(uplink.sent).to.have.length(0);
    expect(sw.locate(C, 'db')).to.equal('uplink:host-b');
    // Unicast to that MAC now goes to host-b alone.
    sw.fromPort('d', ethFrame(C, B));
    expect(uplink.sent.map((s) => s.host)).to.deep.equal(['host-b']);
    sw.fromUplink('host-b', 999, ethFrame(BROADCAST, C));
    expect(sw.uplinkStats().rxUnknownSegment).to.equal(1);
  });

  it('moves a MAC from the uplink to a local port at the first frame from there (RARP after migration)', () => {
    const uplink = new RecordingUplink(['host-a']);
    const { sw, port } = makeSwitch(uplink);
    const client = port('client', 'prod');
    port('incoming', 'prod');
    sw.fromUplink('host-a', 100, ethFrame(BROADCAST, A));
    expect(sw.locate(A)).to.equal('uplink:host-a');
    const rarp = ethFrame(BROADCAST, A, 60, 0x8035);
    sw.fromPort('incoming', rarp);
    expect(sw.locate(A)).to.equal('local:incoming');
    // The client saw the remote broadcast and the RARP; its unicast to A now goes to the new port alone.
    expect(client.frames()).to.have.length(2);
    sw.fromPort('client', ethFrame(A, B));
    expect(sw.portInfo().find((p) => p.id === 'incoming')!.counters.txFrames).to.equal(2);
    expect(uplink.sent.filter((s) => parseEthernet(s.frame)!.dst === A)).to.have.length(0);
    expect(sw.tableStats()[100]!.moved).to.equal(1);
  });

  it('forgets MACs of a removed port, so frames to them are flooded again', () => {
    const { sw, port } = makeSwitch();
    port('a', 'prod');
    const pb = port('b', 'prod');
    const pc = port('c', 'prod');
    sw.fromPort('a', ethFrame(BROADCAST, A));
    sw.removePort('a');
    expect(sw.locate(A)).to.equal(undefined);
    sw.fromPort('b', ethFrame(A, B));
    expect(pc.frames()).to.have.length(2);
    expect(pb.frames()).to.have.length(1);
  });
});

describe('net-virt port queue', () => {
  it('drops past the byte limit too, and counts frames dropped while no socket is attached', () => {
    const q = new PortQueue({ maxFrames: 100, maxBytes: 3000 }, (f) => f);
    q.offer(Buffer.alloc(64));
    expect(q.stats().dropped).to.equal(1);
    const sink = new RecordingSink();
    sink.writableNeedDrain = true;
    q.setSink(sink);
    for (let i = 0; i < 3; i++) q.offer(Buffer.alloc(1500));
    expect(q.stats()).to.include({ queuedFrames: 2, queuedBytes: 3000, dropped: 2 });
    q.setSink(undefined);
    expect(q.stats()).to.include({ queuedFrames: 0, dropped: 4 });
  });
});
