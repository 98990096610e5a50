import { expect } from 'chai';
import fc from 'fast-check';
import { balanceCluster, ClusterState, planEvacuation, rankDestinations, type ClusterModel } from '@motus/core';
import { hardViolations, simulateCluster } from '../../support/cluster-sim.js';

const sim = fc.record({
  seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
  hosts: fc.integer({ min: 2, max: 24 }),
  vms: fc.integer({ min: 1, max: 160 }),
  clusters: fc.integer({ min: 1, max: 3 }),
  antiAffinityGroups: fc.integer({ min: 0, max: 8 }),
  affinityGroups: fc.integer({ min: 0, max: 6 }),
  vmHostRules: fc.integer({ min: 0, max: 8 }),
});

function layout(model: ClusterModel, moves: Array<{ vm: string; to: string }>): Map<string, string> {
  const where = new Map(model.vms.map((v) => [v.name, v.host]));
  for (const move of moves) where.set(move.vm, move.to);
  return where;
}

function withRulesMet(model: ClusterModel): boolean {
  return hardViolations(model, new Map()).length === 0;
}

describe('placement engine on simulated clusters', () => {
  it('the simulator is deterministic and starts with every hard rule met', () => {
    const a = simulateCluster({ seed: 7, hosts: 20, vms: 300 });
    const b = simulateCluster({ seed: 7, hosts: 20, vms: 300 });
    expect(a).to.deep.equal(b);
    expect(hardViolations(a, new Map())).to.deep.equal([]);
  });

  it('every destination the wizard offers keeps every hard constraint (property)', () => {
    fc.assert(
      fc.property(sim, fc.nat(), (options, pickVm) => {
        const model = simulateCluster(options);
        fc.pre(model.vms.length > 0 && withRulesMet(model));
        const vm = model.vms[pickVm % model.vms.length]!;
        const state = new ClusterState(model);
        const ranking = rankDestinations(state, vm.name);
        expect(ranking.candidates.length + ranking.refused.length).to.equal(model.hosts.length);
        for (const candidate of ranking.candidates) {
          expect(candidate.host).to.not.equal(vm.host);
          expect(hardViolations(model, layout(model, [{ vm: vm.name, to: candidate.host }])), `${vm.name} -> ${candidate.host}`).to.deep.equal([]);
          expect(candidate.score).to.be.within(0, 100);
        }
        for (const refused of ranking.refused) expect(refused.refusals.length).to.be.greaterThan(0);
        const scores = ranking.candidates.map((c) => c.score);
        expect(scores).to.deep.equal([...scores].sort((x, y) => y - x));
      }),
      { numRuns: 150 },
    );
  });

  it('initial placement offers only hosts that keep every hard constraint, in any cluster, at no copy cost (property)', () => {
    fc.assert(
      fc.property(sim, fc.nat(), (options, pickVm) => {
        const model = simulateCluster(options);
        fc.pre(model.vms.length > 0 && withRulesMet(model));
        const fresh = model.vms[pickVm % model.vms.length]!;
        // The same VM, not started yet: no host, nothing measured.
        const unplaced: ClusterModel = { ...model, vms: model.vms.map((v) => (v.name === fresh.name ? { ...v, host: '', cpuUsed: 0, memoryUsedMiB: v.memoryMiB, dirtyBytesPerSec: 0 } : v)) };
        const ranking = rankDestinations(new ClusterState(unplaced), fresh.name);
        expect(ranking.initial).to.equal(true);
        expect(ranking.candidates.length + ranking.refused.length).to.equal(model.hosts.length);
        for (const candidate of ranking.candidates) {
          expect(candidate.costSeconds).to.equal(0);
          const placed: ClusterModel = { ...model, vms: model.vms.map((v) => (v.name === fresh.name ? { ...v, host: candidate.host } : v)) };
          expect(hardViolations(placed, new Map()), `${fresh.name} on ${candidate.host}`).to.deep.equal([]);
        }
        const where = fresh.host;
        const mustElsewhere = model.rules.vmHost.some((r) => r.mode === 'must' && r.vms.includes(fresh.name) && !r.hosts.includes(where));
        if (!mustElsewhere && model.hosts.find((h) => h.name === where)!.state === 'connected') {
          expect(ranking.candidates.map((c) => c.host), 'where it ran is a valid place').to.include(where);
        }
      }),
      { numRuns: 150 },
    );
  });

  it('a balancing pass never leaves the imbalance worse, never breaks a rule, stays within its budget (property)', () => {
    fc.assert(
      fc.property(sim, fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 12 }), (options, threshold, maxMoves) => {
        const model = simulateCluster(options);
        fc.pre(withRulesMet(model));
        const state = new ClusterState(model);
        for (const cluster of state.clusters()) {
          const plan = balanceCluster(state, cluster, { threshold, maxMoves, maxMiB: 64 * 1024 });
          expect(plan.imbalanceAfter, `cluster ${cluster}`).to.be.at.most(plan.imbalanceBefore + 1e-12);
          expect(plan.moves.length).to.be.at.most(maxMoves);
          for (const move of plan.moves) expect(move.gain).to.be.greaterThan(0);
          if (threshold === 1) expect(plan.moves).to.deep.equal([]);
          const fresh = new ClusterState(model);
          expect(fresh.imbalance(cluster)).to.be.closeTo(plan.imbalanceBefore, 1e-9);
        }
        const moves = state.allVms().filter((v) => v.host !== model.vms.find((m) => m.name === v.name)!.host).map((v) => ({ vm: v.name, to: v.host }));
        expect(hardViolations(model, layout(model, moves))).to.deep.equal([]);
      }),
      { numRuns: 120 },
    );
  });

  it('the balancer moves affinity groups together, never splits one nor breaks anti-affinity, never worsens the imbalance (property)', () => {
    let groupMoves = 0;
    fc.assert(
      fc.property(sim, fc.integer({ min: 2, max: 5 }), fc.integer({ min: 2, max: 16 }), (options, threshold, maxMoves) => {
        const model = simulateCluster({ ...options, affinityGroups: Math.max(2, options.affinityGroups), hotHosts: Math.max(1, Math.floor(options.hosts / 4)) });
        fc.pre(withRulesMet(model) && model.rules.affinity.length > 0);
        const state = new ClusterState(model);
        const moves: Array<{ vm: string; to: string }> = [];
        for (const cluster of state.clusters()) {
          const plan = balanceCluster(state, cluster, { threshold, maxMoves, maxMiB: 64 * 1024 });
          expect(plan.imbalanceAfter, `cluster ${cluster}`).to.be.at.most(plan.imbalanceBefore + 1e-12);
          expect(plan.moves.reduce((n, m) => n + (m.vms?.length ?? 1), 0), 'every member counts in the budget').to.be.at.most(maxMoves);
          for (const move of plan.moves) {
            expect(move.gain).to.be.greaterThan(0);
            const unit = move.vms ?? [move.vm];
            const rule = model.rules.affinity.find((r) => r.vms.includes(move.vm));
            if (rule) {
              groupMoves++;
              expect([...unit].sort(), 'the whole group, as one proposal').to.deep.equal([...rule.vms].sort());
              expect(move.vm).to.equal(unit[0]);
            } else expect(move.vms).to.equal(undefined);
            for (const vm of unit) moves.push({ vm, to: move.to });
          }
        }
        expect(hardViolations(model, layout(model, moves))).to.deep.equal([]);
        for (const rule of model.rules.affinity) expect(new Set(rule.vms.map((vm) => state.vm(vm)!.host)).size, rule.name).to.equal(1);
      }),
      { numRuns: 150 },
    );
    expect(groupMoves, 'some passes moved a group').to.be.greaterThan(0);
  });

  it('proposes an affinity group as one move with its combined gain and cost; the wizard will not move one member alone', () => {
    const host = (name: string) => ({ name, cluster: 'c', state: 'connected' as const, cpus: 2, memoryTotalMiB: 4096, reservedMiB: 0, baseCpu: 0, linkBytesPerSec: 1e8, linkSource: 'x', activeMigrations: 0, maxMigrations: 8 });
    const vm = (name: string, cpu: number) => ({ name, host: 'a', pool: 'p', memoryMiB: 256, vcpus: 1, cpuUsed: cpu, memoryUsedMiB: 256, dirtyBytesPerSec: 0, movable: true });
    const model: ClusterModel = {
      hosts: [host('a'), host('b'), host('c')],
      vms: [vm('app', 0.6), vm('db', 0.6), vm('pinned', 0.6)],
      pools: [],
      rules: { affinity: [{ name: 'together', vms: ['db', 'app'] }], antiAffinity: [], vmHost: [{ name: 'stay', vms: ['pinned'], hosts: ['a'], mode: 'must' }] },
    };
    const lone = rankDestinations(new ClusterState(model), 'app');
    expect(lone.candidates).to.deep.equal([]);
    expect(lone.refused.find((r) => r.host === 'b')!.refusals.map((r) => r.reason)).to.deep.equal(['rule together keeps app with db, on a']);
    const plan = balanceCluster(new ClusterState(model), 'c', { threshold: 3, maxMoves: 8, maxMiB: 4096 });
    expect(plan.moves).to.have.length(1);
    const [move] = plan.moves;
    expect(move).to.include({ vm: 'app', from: 'a' });
    expect(move!.vms).to.deep.equal(['app', 'db']);
    expect(move!.reason).to.match(/affinity group app, db together/);
    expect(move!.gain).to.be.closeTo(plan.imbalanceBefore - plan.imbalanceAfter, 1e-12);
    const one = new ClusterState(model);
    expect(move!.costSeconds).to.be.closeTo(2 * (256 * 1048576) / 1e8, 1e-9);
    expect(one.imbalanceIfMovedAll(['app', 'db'], move!.to)).to.be.closeTo(plan.imbalanceAfter, 1e-12);
    expect(balanceCluster(new ClusterState(model), 'c', { threshold: 3, maxMoves: 1, maxMiB: 4096 }).moves, 'a group of two does not fit a budget of one move').to.deep.equal([]);
  });

  it('an evacuation plan empties the host or names every VM that cannot go, keeping every rule (property)', () => {
    fc.assert(
      fc.property(sim, fc.nat(), (options, pickHost) => {
        const model = simulateCluster(options);
        fc.pre(withRulesMet(model));
        const host = model.hosts[pickHost % model.hosts.length]!.name;
        const state = new ClusterState(model);
        state.setHostState(host, 'maintenance');
        const plan = planEvacuation(state, host);
        const onHost = model.vms.filter((v) => v.host === host && v.movable).map((v) => v.name);
        expect([...plan.moves.map((m) => m.vm), ...plan.stuck.map((s) => s.vm)].sort()).to.deep.equal(onHost.sort());
        for (const move of plan.moves) expect(move.to).to.not.equal(host);
        for (const stuck of plan.stuck) expect(stuck.refused.length).to.equal(model.hosts.length - 1);
        expect(hardViolations(model, layout(model, plan.moves))).to.deep.equal([]);
      }),
      { numRuns: 120 },
    );
  });

  it('ranks with reasons: balance, load, memory, cost, concurrency; refused hosts say why', () => {
    const model: ClusterModel = {
      hosts: [
        { name: 'a', cluster: 'c', state: 'connected', cpus: 4, memoryTotalMiB: 4096, reservedMiB: 0, baseCpu: 0, linkBytesPerSec: 100 * 1048576, linkSource: 'measured', activeMigrations: 0, maxMigrations: 8 },
        { name: 'b', cluster: 'c', state: 'connected', cpus: 4, memoryTotalMiB: 4096, reservedMiB: 0, baseCpu: 0, linkBytesPerSec: 100 * 1048576, linkSource: 'measured', activeMigrations: 1, maxMigrations: 8 },
        { name: 'c', cluster: 'c', state: 'connected', cpus: 4, memoryTotalMiB: 4096, reservedMiB: 0, baseCpu: 2, linkBytesPerSec: 100 * 1048576, linkSource: 'measured', activeMigrations: 0, maxMigrations: 8 },
        { name: 'd', cluster: 'c', state: 'maintenance', cpus: 4, memoryTotalMiB: 4096, reservedMiB: 0, baseCpu: 0, linkBytesPerSec: 100 * 1048576, linkSource: 'measured', activeMigrations: 0, maxMigrations: 8 },
        { name: 'e', cluster: 'c', state: 'connected', cpus: 4, memoryTotalMiB: 512, reservedMiB: 0, baseCpu: 0, linkBytesPerSec: 100 * 1048576, linkSource: 'measured', activeMigrations: 0, maxMigrations: 8 },
        { name: 'f', cluster: 'other', state: 'connected', cpus: 4, memoryTotalMiB: 4096, reservedMiB: 0, baseCpu: 0, linkBytesPerSec: 100 * 1048576, linkSource: 'measured', activeMigrations: 0, maxMigrations: 8 },
      ],
      vms: [
        { name: 'web1', host: 'a', pool: 'p', memoryMiB: 1024, vcpus: 2, cpuUsed: 1.5, memoryUsedMiB: 800, dirtyBytesPerSec: 4 * 1048576, movable: true },
        { name: 'web2', host: 'b', pool: 'p', memoryMiB: 1024, vcpus: 2, cpuUsed: 0.2, memoryUsedMiB: 500, dirtyBytesPerSec: 0, movable: true },
        { name: 'db', host: 'a', pool: 'p', memoryMiB: 1024, vcpus: 2, cpuUsed: 1, memoryUsedMiB: 900, dirtyBytesPerSec: 0, movable: true },
      ],
      pools: [{ name: 'p', cluster: 'c', shares: 1000, reservation: {}, limit: {} }],
      rules: { affinity: [], antiAffinity: [{ name: 'spread', vms: ['web1', 'web2'] }], vmHost: [{ name: 'pref', vms: ['web1'], hosts: ['c'], mode: 'should' }] },
    };
    const ranking = rankDestinations(new ClusterState(model), 'web1');
    expect(ranking.candidates.map((c) => c.host)).to.have.members(['c']);
    const best = ranking.candidates[0]!;
    expect(best.reasons.join('\n')).to.match(/balance: cluster c imbalance [\d.]+ -> [\d.]+/).and.match(/memory: \d+ MiB of 4096 MiB free/).and.match(/cost: ~[\d.]+ s to copy 800 MiB at 100 MiB\/s \(measured\)/).and.match(/concurrency: 0 of 8/).and.match(/meets rule pref/);
    const why = Object.fromEntries(ranking.refused.map((r) => [r.host, r.refusals.map((x) => x.constraint)]));
    expect(why).to.deep.equal({ a: ['same-host'], b: ['anti-affinity'], d: ['state'], e: ['memory'], f: ['cluster'] });
    expect(ranking.refused.find((r) => r.host === 'b')!.refusals[0]!.reason).to.equal('rule spread keeps web1 apart from web2, which run on b');
  });

  it('moves a VM off the overloaded host at threshold 3 and proposes nothing at threshold 1', () => {
    const host = (name: string) => ({ name, cluster: 'c', state: 'connected' as const, cpus: 2, memoryTotalMiB: 2048, reservedMiB: 0, baseCpu: 0, linkBytesPerSec: 1e8, linkSource: 'x', activeMigrations: 0, maxMigrations: 8 });
    const vm = (name: string, on: string, cpu: number) => ({ name, host: on, pool: 'p', memoryMiB: 128, vcpus: 1, cpuUsed: cpu, memoryUsedMiB: 128, dirtyBytesPerSec: 0, movable: true });
    const model: ClusterModel = { hosts: [host('a'), host('b'), host('c')], vms: [vm('v1', 'a', 1), vm('v2', 'a', 1), vm('v3', 'b', 0.05)], pools: [], rules: { affinity: [], antiAffinity: [], vmHost: [] } };
    expect(balanceCluster(new ClusterState(model), 'c', { threshold: 1, maxMoves: 8, maxMiB: 4096 }).moves).to.deep.equal([]);
    const plan = balanceCluster(new ClusterState(model), 'c', { threshold: 3, maxMoves: 8, maxMiB: 4096 });
    expect(plan.moves.length).to.be.at.least(1);
    expect(plan.moves[0]).to.include({ from: 'a', to: 'c' });
    expect(plan.moves[0]!.reason).to.match(/balances load: from a \(\d+%\) to c/);
    expect(plan.imbalanceAfter).to.be.lessThan(plan.imbalanceBefore);
    const budget = balanceCluster(new ClusterState(model), 'c', { threshold: 5, maxMoves: 8, maxMiB: 100 });
    expect(budget.moves).to.deep.equal([]);
    expect(budget.stoppedBecause).to.match(/no move|budget/);
  });

  it('fixes a broken must rule first, and an affinity group follows its first VM out of an emptied host', () => {
    const host = (name: string) => ({ name, cluster: 'c', state: 'connected' as const, cpus: 4, memoryTotalMiB: 4096, reservedMiB: 0, baseCpu: 0, linkBytesPerSec: 1e8, linkSource: 'x', activeMigrations: 0, maxMigrations: 8 });
    const vm = (name: string, on: string, mem = 256) => ({ name, host: on, pool: 'p', memoryMiB: mem, vcpus: 1, cpuUsed: 0.1, memoryUsedMiB: mem, dirtyBytesPerSec: 0, movable: true });
    const model: ClusterModel = {
      hosts: [host('a'), host('b'), host('c')],
      vms: [vm('app', 'a', 256), vm('db', 'a', 512), vm('pinned', 'b')],
      pools: [],
      rules: { affinity: [{ name: 'together', vms: ['app', 'db'] }], antiAffinity: [], vmHost: [{ name: 'pin', vms: ['pinned'], hosts: ['c'], mode: 'must' }] },
    };
    const plan = balanceCluster(new ClusterState(model), 'c', { threshold: 1, maxMoves: 8, maxMiB: 4096 });
    expect(plan.moves.map((m) => [m.vm, m.to])).to.deep.equal([['pinned', 'c']]);
    expect(plan.moves[0]!.reason).to.match(/fixes: rule pin: pinned must run on c/);
    const state = new ClusterState(model);
    state.setHostState('a', 'maintenance');
    const evacuation = planEvacuation(state, 'a');
    expect(evacuation.stuck).to.deep.equal([]);
    expect(evacuation.moves.map((m) => m.vm)).to.deep.equal(['app', 'db']);
    expect(new Set(evacuation.moves.map((m) => m.to)).size, 'app and db land together').to.equal(1);
  });

  it('divides contended CPU among pools by their shares, a pool wanting less keeping what it wants', () => {
    const host = { name: 'a', cluster: 'c', state: 'connected' as const, cpus: 4, memoryTotalMiB: 4096, reservedMiB: 0, baseCpu: 0, linkBytesPerSec: 1e8, linkSource: 'x', activeMigrations: 0, maxMigrations: 8 };
    const vm = (name: string, pool: string, cpu: number) => ({ name, host: 'a', pool, memoryMiB: 128, vcpus: 4, cpuUsed: cpu, memoryUsedMiB: 0, dirtyBytesPerSec: 0, movable: true });
    const pools = [
      { name: 'gold', cluster: 'c', shares: 2000, reservation: {}, limit: {} },
      { name: 'bronze', cluster: 'c', shares: 500, reservation: {}, limit: {} },
      { name: 'tin', cluster: 'c', shares: 500, reservation: {}, limit: {} },
    ];
    const rules = { affinity: [], antiAffinity: [], vmHost: [] };
    const contended = new ClusterState({ hosts: [host], vms: [vm('g', 'gold', 4), vm('b', 'bronze', 4)], pools, rules });
    expect(contended.vmLoadOn('g', 'a')).to.be.closeTo((0.5 * 3.2) / 4, 1e-9);
    expect(contended.vmLoadOn('b', 'a')).to.be.closeTo((0.5 * 0.8) / 4, 1e-9);
    const modest = new ClusterState({ hosts: [host], vms: [vm('g', 'gold', 4), vm('b', 'bronze', 4), vm('t', 'tin', 0.2)], pools, rules });
    expect(modest.vmLoadOn('t', 'a'), 'tin wants less than its part and keeps it').to.be.closeTo((0.5 * 0.2) / 4, 1e-9);
    expect(modest.vmLoadOn('g', 'a') / modest.vmLoadOn('b', 'a')).to.be.closeTo(4, 1e-9);
    const calm = new ClusterState({ hosts: [host], vms: [vm('g', 'gold', 1), vm('b', 'bronze', 1)], pools, rules });
    expect(calm.vmLoadOn('g', 'a')).to.be.closeTo(calm.vmLoadOn('b', 'a'), 1e-12);
  });
});
