import { expect } from 'chai';
import { join } from 'node:path';
import type { HostInfo, MigrationEvent, MigrationSummary, TaskInfo } from '@motus/sdk';
import { AuditTrail, Inventory, MigrationResources, TaskService, TaskStore, createLogger, validateSite, type HostLink } from '@motus/core';
import { tempDir } from '../../support/index.js';
import { fakeSpec } from '../support/fake-hypervisor.js';

/** What a host's agent says about the VM after the server died, and what the server asks of it. */
class RecordingLink {
  readonly calls: string[] = [];
  constructor(
    readonly name: string,
    private state: string,
  ) {}
  async runState(vm: string) {
    this.calls.push(`runState ${vm}`);
    return this.state as never;
  }
  async commitIncoming(vm: string) {
    this.calls.push(`commitIncoming ${vm}`);
  }
  async finishOutgoing(vm: string) {
    this.calls.push(`finishOutgoing ${vm}`);
    this.state = 'absent';
  }
  async cancelMigration(vm: string) {
    this.calls.push(`cancelMigration ${vm}`);
  }
  /** Set when another host holds the VM's storage lease, so this one cannot take it. */
  leaseHeldElsewhere = false;
  async acquireStorage(vm: string) {
    this.calls.push(`acquireStorage ${vm}`);
    if (this.leaseHeldElsewhere) throw new Error('the lease is held by host-b');
  }
  async abortIncoming(vm: string) {
    this.calls.push(`abortIncoming ${vm}`);
    this.state = 'absent';
  }
  async resume(vm: string) {
    this.calls.push(`resume ${vm}`);
    this.state = 'running';
  }
  async facts() {
    return { vms: [{ name: 'vm1', role: 'running', pid: 4242, serialLog: '/x/serial.log', startedAt: 'then' }] };
  }
}

/**
 * A task that was running when the server died is settled from the agents' view
 * once both its hosts are back (the hosts are scripted here; the e2e restart test
 * kills a real server).
 */
describe('reconciling a task that was running when the server died', () => {
  function setup(sourceState: string, destinationState: string) {
    const dir = tempDir('reconcile');
    const inventory = new Inventory(join(dir.path, 'motus.db'));
    const db = inventory.database;
    const store = new TaskStore(db);
    const audit = new AuditTrail(db);
    const requestedAt = new Date().toISOString();
    inventory.putVm({ name: 'vm1', host: 'host-a', state: 'migrating', spec: fakeSpec('vm1') });
    const info: TaskInfo = { id: 'm-1', vm: 'vm1', destination: 'host-b', priority: 'normal', requestedBy: 'olga', state: 'running', createdAt: requestedAt, startedAt: requestedAt };
    store.put(1, info);
    const summary: MigrationSummary = { id: 'm-1', vm: 'vm1', source: 'host-a', destination: 'host-b', requestedBy: 'olga', priority: 'normal', state: 'running', phase: 'precopy', requestedAt };
    inventory.putMigration(summary);
    inventory.addEvent({ type: 'requested', vm: 'vm1', source: 'host-a', destination: 'host-b', requestedBy: 'olga', priority: 'normal', migrationId: 'm-1', seq: 1, at: requestedAt });
    const links = { 'host-a': new RecordingLink('host-a', sourceState), 'host-b': new RecordingLink('host-b', destinationState) };
    const up = new Set<string>();
    const published: MigrationEvent[] = [];
    const site = validateSite({ hosts: [{ name: 'host-a', maxMigrations: 1 }, { name: 'host-b' }] });
    const tasks = new TaskService({
      store,
      audit,
      inventory,
      orchestrator: { isBusy: () => false, reservedOn: () => 0 } as never,
      resources: new MigrationResources(site, (host) => up.has(host)),
      config: site.tasks,
      logger: createLogger({}, { write: () => undefined }),
      host: (name) => (up.has(name) ? { info: { name, state: 'connected' } as HostInfo, link: links[name as 'host-a'] as unknown as HostLink } : undefined),
      knownHost: () => true,
      publish: (event) => published.push(event),
      vmChanged: async () => undefined,
    });
    const comeBack = (name: string) => {
      up.add(name);
      tasks.hostAvailable(name);
    };
    return { dir, inventory, store, audit, links, tasks, published, comeBack };
  }

  it('waits for both hosts, then finds the VM running on the destination: completed, committed there, source stopped, never started again', async () => {
    const t = setup('postmigrate', 'running');
    try {
      expect(t.tasks.task('m-1').state).to.equal('running');
      t.comeBack('host-b');
      expect(t.links['host-b'].calls).to.deep.equal([]);
      t.comeBack('host-a');
      const summary = await t.tasks.done('m-1')!;
      expect(summary.state).to.equal('completed');
      expect(t.links['host-b'].calls).to.deep.equal(['runState vm1', 'commitIncoming vm1']);
      expect(t.links['host-a'].calls).to.deep.equal(['finishOutgoing vm1']);
      expect(t.inventory.vm('vm1')).to.include({ host: 'host-b', state: 'running', pid: 4242 });
      expect(t.store.get('m-1')!.task.state).to.equal('completed');
      expect(t.published.map((e) => [e.type, e.seq])).to.deep.equal([['resumed', 2], ['completed', 3]]);
      expect(t.audit.query({ vm: 'vm1' }).map((r) => [r.action, r.outcome])).to.deep.equal([['migration.reconciled', 'completed']]);
    } finally {
      t.inventory.close();
      t.dir.remove();
    }
  });

  it('finds the destination still waiting: rolled back, the source resumed, the VM on its source', async () => {
    const t = setup('running', 'inmigrate');
    try {
      t.comeBack('host-a');
      t.comeBack('host-b');
      const summary = await t.tasks.done('m-1')!;
      expect(summary.state).to.equal('failed');
      expect(summary.error?.code).to.equal('MOTUS_E_MIGRATION_FAILED');
      // The destination gives its copy (and lease) up before the source takes the lease and is cancelled.
      expect(t.links['host-a'].calls).to.deep.equal(['acquireStorage vm1', 'cancelMigration vm1', 'runState vm1', 'resume vm1', 'runState vm1']);
      expect(t.links['host-b'].calls).to.deep.equal(['runState vm1', 'abortIncoming vm1']);
      expect(t.inventory.vm('vm1')).to.include({ host: 'host-a', state: 'running' });
      expect(t.store.get('m-1')!.task).to.include({ state: 'failed' });
      expect(t.published.map((e) => e.type)).to.deep.equal(['failed', 'rolled-back']);
      expect(t.audit.query({ vm: 'vm1' })[0]).to.include({ action: 'migration.reconciled', outcome: 'rolled back' });
    } finally {
      t.inventory.close();
      t.dir.remove();
    }
  });

  it('leaves the source paused, neither cancelled nor resumed, when it cannot take the storage lease back (fencing)', async () => {
    const t = setup('paused', 'inmigrate');
    try {
      t.links['host-a'].leaseHeldElsewhere = true;
      t.comeBack('host-a');
      t.comeBack('host-b');
      const summary = await t.tasks.done('m-1')!;
      expect(summary.state).to.equal('failed');
      // Cancelling would let QEMU resume the source by itself, without the lease.
      expect(t.links['host-a'].calls).to.deep.equal(['acquireStorage vm1', 'runState vm1', 'runState vm1']);
      expect(t.inventory.vm('vm1')).to.include({ host: 'host-a', state: 'paused' });
      expect(t.published.map((e) => e.type)).to.deep.equal(['failed', 'rolled-back']);
    } finally {
      t.inventory.close();
      t.dir.remove();
    }
  });
});
