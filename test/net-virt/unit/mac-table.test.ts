import { expect } from 'chai';
import { MacTable } from '@motus/net-virt';

describe('net-virt MAC table', () => {
  let clock = 0;
  const now = () => clock;
  beforeEach(() => (clock = 1_000_000));

  it('keys by (MAC, VLAN): the same MAC in two VLANs is two entries', () => {
    const t = new MacTable({ maxEntries: 10, agingMs: 300_000, now });
    t.learn('02:00:00:00:00:01', 0, 'local:a');
    t.learn('02:00:00:00:00:01', 20, 'uplink:host-b');
    expect(t.lookup('02:00:00:00:00:01', 0)).to.equal('local:a');
    expect(t.lookup('02:00:00:00:00:01', 20)).to.equal('uplink:host-b');
    expect(t.lookup('02:00:00:00:00:01', 30)).to.equal(undefined);
  });

  it('relocates an entry at once when the MAC shows up elsewhere', () => {
    const t = new MacTable({ maxEntries: 10, agingMs: 300_000, now });
    expect(t.learn('02:00:00:00:00:01', 0, 'local:vm.n0')).to.equal('new');
    expect(t.learn('02:00:00:00:00:01', 0, 'local:vm.n0')).to.equal('refreshed');
    expect(t.learn('02:00:00:00:00:01', 0, 'uplink:host-b')).to.equal('moved');
    expect(t.lookup('02:00:00:00:00:01', 0)).to.equal('uplink:host-b');
    expect(t.stats()).to.include({ entries: 1, learned: 1, moved: 1 });
  });

  it('ages entries out after the aging time, and a refresh keeps them', () => {
    const t = new MacTable({ maxEntries: 10, agingMs: 300_000, now });
    t.learn('02:00:00:00:00:01', 0, 'local:a');
    t.learn('02:00:00:00:00:02', 0, 'local:a');
    clock += 200_000;
    t.learn('02:00:00:00:00:02', 0, 'local:a');
    clock += 100_000;
    expect(t.lookup('02:00:00:00:00:01', 0)).to.equal(undefined);
    expect(t.lookup('02:00:00:00:00:02', 0)).to.equal('local:a');
    clock += 300_000;
    expect(t.sweep()).to.equal(1);
    expect(t.size).to.equal(0);
    expect(t.stats().aged).to.equal(2);
  });

  it('when full, evicts from the location holding the most entries, oldest first', () => {
    const t = new MacTable({ maxEntries: 8, agingMs: 300_000, now });
    t.learn('02:00:00:00:00:a1', 0, 'local:quiet');
    t.learn('02:00:00:00:00:a2', 0, 'uplink:host-b');
    for (let i = 0; i < 100; i++) {
      clock++;
      t.learn(`02:00:00:00:01:${(i & 0xff).toString(16).padStart(2, '0')}`, 0, 'local:flooder');
    }
    expect(t.size).to.equal(8);
    expect(t.lookup('02:00:00:00:00:a1', 0)).to.equal('local:quiet');
    expect(t.lookup('02:00:00:00:00:a2', 0)).to.equal('uplink:host-b');
    // The flooder keeps its six most recent MACs.
    expect(t.lookup('02:00:00:00:01:63', 0)).to.equal('local:flooder');
    expect(t.lookup('02:00:00:00:01:5d', 0)).to.equal(undefined);
    expect(t.stats().evicted).to.equal(94);
  });

  it('prefers an aged entry to an eviction', () => {
    const t = new MacTable({ maxEntries: 2, agingMs: 1_000, now });
    t.learn('02:00:00:00:00:01', 0, 'local:a');
    t.learn('02:00:00:00:00:02', 0, 'local:b');
    clock += 500;
    t.learn('02:00:00:00:00:02', 0, 'local:b');
    clock += 600;
    t.learn('02:00:00:00:00:03', 0, 'local:b');
    expect(t.stats()).to.include({ evicted: 0, aged: 1, entries: 2 });
  });

  it('forgets the MACs of a port that went away', () => {
    const t = new MacTable({ maxEntries: 10, agingMs: 300_000, now });
    t.learn('02:00:00:00:00:01', 0, 'local:a');
    t.learn('02:00:00:00:00:02', 0, 'local:a');
    t.learn('02:00:00:00:00:03', 0, 'local:b');
    expect(t.flushLocation('local:a')).to.equal(2);
    expect(t.size).to.equal(1);
  });
});
