import { expect } from 'chai';
import type { Priority } from '@motus/sdk';
import { Dispatcher, MigrationResources, ResourceLedger, validateSite, type Dispatchable } from '@motus/core';

interface T extends Dispatchable {
  id: string;
  priority: Priority;
  seq: number;
  keys: string[];
}

let seq = 0;
function task(id: string, keys: string[], priority: Priority = 'normal'): T {
  return { id, priority, seq: ++seq, keys };
}

function setup(capacity: Record<string, number>, burst = 4) {
  const ledger = new ResourceLedger((key) => capacity[key] ?? Infinity);
  return { ledger, dispatcher: new Dispatcher<T>(ledger, { highPriorityBurst: burst }) };
}

describe('task dispatcher: limits, priority, no starvation', () => {
  it('starts no more than a key allows and starts the next one as soon as room frees', () => {
    const { ledger, dispatcher } = setup({ 'host:a': 2 });
    const tasks = Array.from({ length: 5 }, (_, i) => task(`t${i}`, ['host:a', `host:b${i}`]));
    tasks.forEach((t) => dispatcher.enqueue(t));
    expect(dispatcher.takeReady().map((t) => t.id)).to.deep.equal(['t0', 't1']);
    expect(dispatcher.takeReady()).to.deep.equal([]);
    expect(ledger.inUse('host:a')).to.equal(2);
    expect(dispatcher.waitingFor('t2')).to.equal('host:a');
    dispatcher.finished(tasks[1]!);
    expect(dispatcher.takeReady().map((t) => t.id)).to.deep.equal(['t2']);
    expect(ledger.inUse('host:a')).to.equal(2);
    expect(dispatcher.size).to.equal(2);
  });

  it('lets a task on a free host pass one blocked on a full host (no head-of-line blocking)', () => {
    const { dispatcher } = setup({ 'host:a': 1 });
    const first = task('a1', ['host:a']);
    dispatcher.enqueue(first);
    dispatcher.enqueue(task('a2', ['host:a']));
    dispatcher.enqueue(task('c1', ['host:c']));
    expect(dispatcher.takeReady().map((t) => t.id)).to.deep.equal(['a1', 'c1']);
    dispatcher.finished(first);
    expect(dispatcher.takeReady().map((t) => t.id)).to.deep.equal(['a2']);
  });

  it('counts every key of a task: a full network or datastore holds it even when its hosts have room', () => {
    const { dispatcher } = setup({ 'net:default': 1, 'ds:nas': 5 });
    const first = task('x', ['host:a', 'host:b', 'net:default']);
    dispatcher.enqueue(first);
    dispatcher.enqueue(task('y', ['host:c', 'host:d', 'net:default']));
    expect(dispatcher.takeReady().map((t) => t.id)).to.deep.equal(['x']);
    expect(dispatcher.waitingFor('y')).to.equal('net:default');
    dispatcher.finished(first);
    expect(dispatcher.takeReady().map((t) => t.id)).to.deep.equal(['y']);
  });

  it('starts high tasks before normal ones queued earlier, first come first served within a level', () => {
    const { dispatcher } = setup({ 'host:a': 1 });
    const running = task('run', ['host:a']);
    dispatcher.enqueue(running);
    dispatcher.takeReady();
    for (const t of [task('n1', ['host:a']), task('n2', ['host:a']), task('h1', ['host:a'], 'high'), task('h2', ['host:a'], 'high')]) dispatcher.enqueue(t);
    const order: string[] = [];
    let current = running;
    for (let i = 0; i < 4; i++) {
      dispatcher.finished(current);
      const started = dispatcher.takeReady();
      expect(started).to.have.length(1);
      current = started[0]!;
      order.push(current.id);
    }
    expect(order).to.deep.equal(['h1', 'h2', 'n1', 'n2']);
  });

  it('never starves normal tasks: after the burst of high ones, the oldest normal task goes next', () => {
    const { dispatcher } = setup({ 'host:a': 1 }, 3);
    const running = task('run', ['host:a']);
    dispatcher.enqueue(running);
    dispatcher.takeReady();
    dispatcher.enqueue(task('n1', ['host:a']));
    for (let i = 1; i <= 8; i++) dispatcher.enqueue(task(`h${i}`, ['host:a'], 'high'));
    const order: string[] = [];
    let current = running;
    for (let i = 0; i < 9; i++) {
      dispatcher.finished(current);
      current = dispatcher.takeReady()[0]!;
      order.push(current.id);
    }
    expect(order).to.deep.equal(['h1', 'h2', 'h3', 'n1', 'h4', 'h5', 'h6', 'h7', 'h8']);
  });

  it('does not count high starts while no normal task waits', () => {
    const { dispatcher } = setup({}, 2);
    for (let i = 1; i <= 5; i++) dispatcher.enqueue(task(`h${i}`, [`host:h${i}`], 'high'));
    expect(dispatcher.takeReady()).to.have.length(5);
    dispatcher.enqueue(task('n1', ['host:n']));
    dispatcher.enqueue(task('h6', ['host:x'], 'high'));
    expect(dispatcher.takeReady().map((t) => t.id)).to.deep.equal(['h6', 'n1']);
  });

  it('takes a cancelled task out of the queue, parked or not', () => {
    const { dispatcher } = setup({ 'host:a': 1 });
    const first = task('a1', ['host:a']);
    dispatcher.enqueue(first);
    dispatcher.enqueue(task('a2', ['host:a']));
    dispatcher.enqueue(task('a3', ['host:a']));
    dispatcher.takeReady();
    expect(dispatcher.remove('a2')).to.equal(true);
    expect(dispatcher.remove('a2')).to.equal(false);
    dispatcher.finished(first);
    expect(dispatcher.takeReady().map((t) => t.id)).to.deep.equal(['a3']);
    expect(dispatcher.size).to.equal(0);
  });

  it('holds tasks for a host that is down and starts them when it comes back', () => {
    let up = false;
    const ledger = new ResourceLedger((key) => (key === 'up:b' ? (up ? Infinity : 0) : Infinity));
    const dispatcher = new Dispatcher<T>(ledger, { highPriorityBurst: 4 });
    dispatcher.enqueue(task('t', ['up:a', 'up:b']));
    expect(dispatcher.takeReady()).to.deep.equal([]);
    up = true;
    dispatcher.capacityChanged('up:b');
    expect(dispatcher.takeReady().map((t) => t.id)).to.deep.equal(['t']);
  });
});

describe('migration resources from the site file', () => {
  const site = validateSite({
    hosts: [
      { name: 'a', maxMigrations: 2, migrationNetwork: 'ten' },
      { name: 'b', migrationNetwork: 'ten' },
      { name: 'c' },
    ],
    networks: [{ name: 'ten', gbps: 10 }, { name: 'slow', gbps: 1, maxMigrations: 1 }],
    datastores: [
      { name: 'nas', pathPrefix: '/mnt/nas/' },
      { name: 'nas-fast', pathPrefix: '/mnt/nas/fast/', maxMigrations: 3 },
    ],
    tasks: { maxPerHost: 5, maxPerDatastore: 50 },
  });
  const up = new Set(['a', 'b']);
  const resources = new MigrationResources(site, (host) => up.has(host));

  it('derives the keys of a migration: both hosts, their networks, the datastores of its disks', () => {
    const keys = resources.keysFor({ disks: [{ id: 'd0', path: '/mnt/nas/fast/vm.qcow2', format: 'qcow2' }, { id: 'd1', path: '/srv/other/x.raw', format: 'raw' }] }, 'a', 'c');
    expect(keys.sort()).to.deep.equal(['ds:/srv/other', 'ds:nas-fast', 'host:a', 'host:c', 'net:default', 'net:ten', 'up:a', 'up:c'].sort());
    expect(resources.keysFor({}, 'a', 'b').filter((k) => k.startsWith('net:'))).to.deep.equal(['net:ten']);
  });

  it('takes limits from host, network speed, datastore and the site defaults', () => {
    expect(resources.capacity('host:a')).to.equal(2);
    expect(resources.capacity('host:c')).to.equal(5);
    expect(resources.capacity('net:ten')).to.equal(8);
    expect(resources.capacity('net:default')).to.equal(4);
    expect(resources.capacity('net:slow')).to.equal(1);
    expect(resources.capacity('ds:nas')).to.equal(50);
    expect(resources.capacity('ds:nas-fast')).to.equal(3);
    expect(resources.capacity('ds:/srv/other')).to.equal(50);
    expect(resources.capacity('up:a')).to.equal(Infinity);
    expect(resources.capacity('up:c')).to.equal(0);
  });
});
