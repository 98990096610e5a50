import { expect } from 'chai';
import { parseEthernet, VirtualSwitch, type UplinkTransport } from '@motus/net-virt';
import { BROADCAST, ethFrame, RecordingSink } from '../support/frames.js';

const SERVER = '02:00:00:00:00:0a';
const CLIENT = '02:00:00:00:00:0c';

class RecordingUplink implements UplinkTransport {
  sent: Array<{ host: string; frame: Buffer }> = [];
  peers() {
    return ['host-b', 'host-c'];
  }
  send(host: string, _vni: number, frame: Buffer) {
    this.sent.push({ host, frame });
  }
}

/** A frame from the client to the server carrying sequence number `seq` in its payload. */
const toServer = (seq: number) => ethFrame(SERVER, CLIENT, 64, 0x0800, seq);
const seqOf = (frame: Buffer) => frame[20];

/** The source host's switch: the server's port, the client behind the uplink to host-c, a clock the test moves. */
function sourceSwitch(holdMs = 1_000) {
  let now = 1_000;
  const uplink = new RecordingUplink();
  const sw = new VirtualSwitch({
    networks: [{ name: 'prod', vni: 100 }],
    macTableSize: 64,
    macAgingMs: 300_000,
    queue: { maxFrames: 4, maxBytes: 1 << 20 },
    switchoverHoldMs: holdMs,
    uplink,
    now: () => now,
  });
  sw.addPort('srv.n0', 'prod');
  const port = new RecordingSink();
  sw.connectPort('srv.n0', port);
  sw.fromPort('srv.n0', ethFrame(BROADCAST, SERVER));
  sw.fromUplink('host-c', 100, ethFrame(BROADCAST, CLIENT));
  uplink.sent = [];
  const at = (ms: number) => (now = ms);
  return { sw, uplink, port, at };
}

describe('net-virt switchover hold (frames for a VM stopped to move)', () => {
  it('takes back what reached the stopped port, holds what follows, sends it ahead in order, and passes on late frames where the MAC shows up', () => {
    const { sw, uplink, port, at } = sourceSwitch();
    sw.recordPort('srv.n0', SERVER);
    at(1_000);
    sw.fromUplink('host-c', 100, toServer(0));
    at(1_010);
    sw.fromUplink('host-c', 100, toServer(1));
    // QEMU stopped the VM at 1015; frame 2 reached the port after it, frame 3 waits in the port's queue.
    at(1_020);
    sw.fromUplink('host-c', 100, toServer(2));
    port.writableNeedDrain = true;
    at(1_025);
    sw.fromUplink('host-c', 100, toServer(3));
    expect(sw.portInfo()[0]!.counters.queuedFrames).to.equal(1);
    at(1_030);
    sw.holdPort('srv.n0', SERVER, 1_015);
    expect(sw.portInfo()[0]!.counters.queuedFrames, 'the queued frame was taken back').to.equal(0);
    at(1_040);
    sw.fromUplink('host-c', 100, toServer(4));
    // A broadcast is not held: the destination's port got it too.
    sw.fromUplink('host-c', 100, ethFrame(BROADCAST, CLIENT, 64, 0x0806, 9));
    expect(port.frames().map(seqOf)).to.deep.equal([0, 0, 1, 2]);
    // Each held frame went ahead at once, in order, to every peer (the one where the VM arrives takes it) —
    // but never back to the peer it came from (frame 4; the two taken back from the port have no known origin).
    expect(uplink.sent.map((s) => [s.host, parseEthernet(s.frame)!.dst, seqOf(s.frame)])).to.deep.equal([
      ['host-b', SERVER, 2],
      ['host-c', SERVER, 2],
      ['host-b', SERVER, 3],
      ['host-c', SERVER, 3],
      ['host-b', SERVER, 4],
    ]);
    expect(sw.holdStats()).to.deep.include({ held: 3, handedOff: 3, redelivered: 0, holding: 1 });

    // The destination's self-announce RARP arrives from host-b: it has every held frame already, so none goes twice.
    at(1_200);
    sw.fromUplink('host-b', 100, ethFrame(BROADCAST, SERVER, 60, 0x8035));
    expect(sw.locate(SERVER)).to.equal('uplink:host-b');
    expect(uplink.sent).to.have.length(5);
    // host-c has not seen the RARP yet and still sends here: passed on to host-b, not dropped by split horizon.
    sw.fromUplink('host-c', 100, toServer(5));
    // Never back to where a frame came from.
    sw.fromUplink('host-b', 100, toServer(6));
    expect(uplink.sent.map((s) => [s.host, seqOf(s.frame)]).slice(5)).to.deep.equal([['host-b', 5]]);
    expect(sw.holdStats()).to.deep.include({ held: 3, handedOff: 3, redelivered: 3, redirected: 1, dropped: 0, holding: 0, lastHoldMs: 185 });

    // The redirect lasts a while only.
    at(2_300);
    sw.fromUplink('host-c', 100, toServer(7));
    expect(uplink.sent).to.have.length(6);
  });

  it('hands the held frames over to the port waiting for the VM on its destination, in order, once, before the VM speaks there', () => {
    // Three switches joined by an in-memory full mesh: the server leaves host-a for host-b; the client is on host-c.
    const switches = new Map<string, VirtualSwitch>();
    const mesh = (self: string): UplinkTransport => ({
      peers: () => ['host-a', 'host-b', 'host-c'].filter((h) => h !== self),
      send: (host, vni, frame) => switches.get(host)!.fromUplink(self, vni, Buffer.from(frame)),
    });
    const make = (host: string) => {
      const sw = new VirtualSwitch({ networks: [{ name: 'prod', vni: 100 }], macTableSize: 64, macAgingMs: 300_000, queue: { maxFrames: 64, maxBytes: 1 << 20 }, uplink: mesh(host) });
      switches.set(host, sw);
      return sw;
    };
    const [a, b, c] = [make('host-a'), make('host-b'), make('host-c')];
    a.addPort('srv.n0', 'prod', SERVER);
    c.addPort('cli.n0', 'prod', CLIENT);
    const source = new RecordingSink();
    const client = new RecordingSink();
    a.connectPort('srv.n0', source);
    c.connectPort('cli.n0', client);
    a.fromPort('srv.n0', ethFrame(BROADCAST, SERVER));
    c.fromPort('cli.n0', ethFrame(BROADCAST, CLIENT));
    c.fromPort('cli.n0', toServer(0));
    // The destination QEMU connects to its new port; it reads nothing until the VM runs.
    b.addPort('srv.n0', 'prod', SERVER);
    const destination = new RecordingSink();
    b.connectPort('srv.n0', destination);
    const bystander = new RecordingSink();
    b.addPort('other.n0', 'prod', '02:00:00:00:00:0e');
    b.connectPort('other.n0', bystander);

    a.recordPort('srv.n0', SERVER);
    a.holdPort('srv.n0', SERVER, Date.now());
    for (let seq = 1; seq <= 3; seq++) c.fromPort('cli.n0', toServer(seq));
    expect(source.frames().filter((f) => parseEthernet(f)!.dst === SERVER).map(seqOf), 'the stopped source got nothing more').to.deep.equal([0]);
    expect(destination.frames().filter((f) => parseEthernet(f)!.dst === SERVER).map(seqOf), 'waiting at the destination, in order').to.deep.equal([1, 2, 3]);
    expect(bystander.frames().filter((f) => parseEthernet(f)!.dst === SERVER)).to.have.length(0);
    // Until the VM speaks from host-b, host-b still reaches it through host-a, and host-c keeps sending to host-a.
    expect(b.locate(SERVER)).to.equal('uplink:host-a');
    expect(c.locate(SERVER)).to.equal('uplink:host-a');

    // The VM runs on host-b and announces itself: every switch relearns it, nothing reaches the destination twice.
    b.fromPort('srv.n0', ethFrame(BROADCAST, SERVER, 60, 0x8035));
    c.fromPort('cli.n0', toServer(4));
    expect(destination.frames().filter((f) => parseEthernet(f)!.dst === SERVER).map(seqOf)).to.deep.equal([1, 2, 3, 4]);
    expect([a.locate(SERVER), b.locate(SERVER), c.locate(SERVER)]).to.deep.equal(['uplink:host-b', 'local:srv.n0', 'uplink:host-b']);
    expect(a.holdStats()).to.deep.include({ held: 3, handedOff: 3, redelivered: 3, dropped: 0, holding: 0 });
  });

  it('gives the held frames back to the port when the VM stays (rolled back)', () => {
    const { sw, port, at } = sourceSwitch();
    sw.recordPort('srv.n0', SERVER);
    at(1_000);
    sw.fromUplink('host-c', 100, toServer(0));
    at(1_010);
    sw.holdPort('srv.n0', SERVER, 1_005);
    sw.fromUplink('host-c', 100, toServer(1));
    sw.fromUplink('host-c', 100, toServer(2));
    expect(port.frames().map(seqOf)).to.deep.equal([0, 0]);
    sw.releasePort('srv.n0');
    expect(port.frames().map(seqOf)).to.deep.equal([0, 0, 1, 2]);
    // The resumed VM's own frames no longer count as a move.
    sw.fromPort('srv.n0', ethFrame(CLIENT, SERVER));
    sw.fromUplink('host-c', 100, toServer(3));
    expect(port.frames().map(seqOf)).to.deep.equal([0, 0, 1, 2, 3]);
    expect(sw.holdStats()).to.deep.include({ held: 2, redelivered: 2, holding: 0 });
  });

  it('is bounded, and a hold nobody ends expires: delivered where the table says, or dropped and counted', () => {
    const { sw, uplink, at } = sourceSwitch(500);
    sw.holdPort('srv.n0', SERVER, 1_000);
    for (let seq = 0; seq < 6; seq++) sw.fromUplink('host-c', 100, toServer(seq));
    expect(sw.holdStats()).to.deep.include({ held: 4, dropped: 2, holding: 1 });
    // The source process ended and its port went; nothing has announced the MAC anywhere.
    sw.removePort('srv.n0');
    at(1_400);
    sw.expireHolds();
    expect(sw.holdsPending()).to.equal(1);
    at(1_600);
    sw.expireHolds();
    expect(sw.holdsPending()).to.equal(0);
    expect(sw.holdStats()).to.deep.include({ held: 4, dropped: 6, redelivered: 0 });
    // The four it kept went ahead at once to host-b (not back to host-c, where they came from); nobody took them.
    expect(uplink.sent.map((s) => s.host)).to.deep.equal(['host-b', 'host-b', 'host-b', 'host-b']);
    // With the hold gone, the switch floods unknown unicast again as usual.
    sw.fromUplink('host-c', 100, toServer(7));
    expect(sw.holdStats().held).to.equal(4);
  });

  it('delivers an expired hold where the table reaches the MAC (the VM never left and nobody said so)', () => {
    const { sw, port, uplink, at } = sourceSwitch(500);
    sw.holdPort('srv.n0', SERVER, 1_000);
    sw.fromUplink('host-c', 100, toServer(1));
    expect(port.frames().map(seqOf)).to.deep.equal([0]);
    at(1_600);
    sw.expireHolds();
    expect(port.frames().map(seqOf)).to.deep.equal([0, 1]);
    expect(uplink.sent.map((s) => s.host), 'sent ahead once, not back to host-c').to.deep.equal(['host-b']);
    expect(sw.holdStats()).to.deep.include({ held: 1, redelivered: 1, dropped: 0, holding: 0 });
  });

  it('with switchoverHoldMs 0 holds nothing: frames for the stopped VM go to its port like on a plain switch', () => {
    const { sw, port, uplink } = sourceSwitch(0);
    sw.recordPort('srv.n0', SERVER);
    sw.fromUplink('host-c', 100, toServer(1));
    sw.holdPort('srv.n0', SERVER, 1_000);
    sw.fromUplink('host-c', 100, toServer(2));
    sw.fromUplink('host-b', 100, ethFrame(BROADCAST, SERVER, 60, 0x8035));
    // (the last one is the flooded RARP)
    expect(port.frames().map(seqOf)).to.deep.equal([0, 1, 2, 0]);
    expect(uplink.sent).to.have.length(0);
    expect(sw.holdStats()).to.deep.include({ held: 0, redelivered: 0, holding: 0, lastHoldMs: null });
  });
});
