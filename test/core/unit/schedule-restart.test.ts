import { expect } from 'chai';
import { createEmbeddedPlatform, type EmbeddedPlatform } from '@motus/core';
import { sleep, tempDir, waitFor } from '../../support/index.js';
import { createFakeWorld, fakeHypervisorPlugin, fakeSpec } from '../support/fake-hypervisor.js';

describe('schedules and queued tasks across a server restart (fake hypervisor)', function () {
  this.timeout(30_000);

  function start(stateDir: string, graceSeconds: number): Promise<EmbeddedPlatform> {
    return createEmbeddedPlatform({
      site: {
        hosts: [{ name: 'host-a', memoryMiB: 4096, maxMigrations: 1 }, { name: 'host-b', memoryMiB: 4096 }],
        plugins: [],
        tasks: { missedRunGraceSeconds: graceSeconds },
      },
      stateDir,
      extraPlugins: [{ definition: fakeHypervisorPlugin(createFakeWorld()) }],
      heartbeatMs: 100,
    });
  }

  it('runs a schedule missed while the server was down when it is within the grace, and records older ones as missed', async () => {
    const dir = tempDir('sched-restart');
    try {
      let platform = await start(dir.path, 2);
      const olga = { user: 'olga', role: 'operator' as const, tokenId: 't-test' };
      platform.server.identities.addUser('olga', 'operator', 'admin');
      await platform.startVm(fakeSpec('v1'), 'host-a');
      await platform.startVm(fakeSpec('v2'), 'host-a');
      const t0 = Date.now();
      const early = platform.server.schedules.create({ target: { vms: ['v1'] }, destination: 'host-b', at: new Date(t0 + 600).toISOString() }, olga);
      const late = platform.server.schedules.create({ target: { vms: ['v2'] }, destination: 'host-b', at: new Date(t0 + 2_800).toISOString() }, olga);
      await platform.stop();
      await sleep(Math.max(0, t0 + 3_400 - Date.now()));

      platform = await start(dir.path, 2);
      try {
        const trail = () => platform.server.audit.query({ user: 'olga' });
        await waitFor('the late schedule to run', () => trail().find((r) => r.action === 'schedule.run'), 5_000, 50);
        const missed = trail().find((r) => r.action === 'schedule.missed');
        expect(missed?.detail).to.include({ schedule: early.id });
        const run = trail().find((r) => r.action === 'schedule.run')!;
        expect(run.detail).to.include({ schedule: late.id });
        expect(String(run.detail!.note)).to.match(/late by \d+ s \(the server was down\)/);
        expect(platform.server.schedules.get(early.id)).to.include({ enabled: false, lastOutcome: 'missed while the server was down' });
        expect(platform.server.schedules.get(late.id).enabled).to.equal(false);
        // The VMs' processes did not survive this in-process site, so the run's task is refused; it is recorded as olga's.
        const refused = platform.server.audit.query({ vm: 'v2' }).find((r) => r.action === 'migration.rejected');
        expect(refused).to.include({ user: 'olga', outcome: 'MOTUS_E_VM_NOT_RUNNING' });
        expect(platform.server.audit.verify().ok).to.equal(true);
      } finally {
        await platform.stop();
      }
    } finally {
      dir.remove();
    }
  });

  it('keeps a queued task queued across a restart, waiting for a host that is not back yet', async () => {
    const dir = tempDir('queue-restart');
    try {
      let platform = await start(dir.path, 3600);
      await platform.startVm(fakeSpec('q1'), 'host-a');
      const hostB = platform.agents.get('host-b')!;
      hostB.facts = async () => {
        throw new Error('connection refused');
      };
      await waitFor('host-b to be down', async () => ((await platform.hosts()).find((h) => h.name === 'host-b')!.state === 'disconnected' ? true : undefined), 5_000, 50);
      // A down host is refused at once; a task for a host that is not registered yet (after a restart) waits for it.
      const inv = platform.server.tasks;
      const refused = await inv.submit({ vm: 'q1', destination: 'host-b', requestedBy: 'olga' }).catch((err: Error) => err);
      expect((refused as { code?: string }).code).to.equal('MOTUS_E_HOST_DOWN');
      await platform.stop();

      // Only host-a comes back with the site: host-b is not registered yet after this restart.
      platform = await createEmbeddedPlatform({
        site: { hosts: [{ name: 'host-a', memoryMiB: 4096 }], plugins: [] },
        stateDir: dir.path,
        extraPlugins: [{ definition: fakeHypervisorPlugin(createFakeWorld()) }],
        heartbeatMs: 100,
      });
      try {
        await platform.startVm(fakeSpec('q2'), 'host-a');
        const { task } = await platform.server.tasks.submit({ vm: 'q2', destination: 'host-b', requestedBy: 'olga' });
        expect(task.state).to.equal('queued');
        expect(task.waitingFor).to.equal('up:host-b');
        await platform.stop();
        platform = await createEmbeddedPlatform({
          site: { hosts: [{ name: 'host-a', memoryMiB: 4096 }], plugins: [] },
          stateDir: dir.path,
          extraPlugins: [{ definition: fakeHypervisorPlugin(createFakeWorld()) }],
          heartbeatMs: 100,
        });
        const restored = platform.server.tasks.task(task.id);
        expect([restored.state, restored.requestedBy]).to.deep.equal(['queued', 'olga']);
        expect((await platform.server.migration(task.id)).state).to.equal('queued');
      } finally {
        await platform.stop();
      }
    } finally {
      dir.remove();
    }
  });
});
