import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentCpu, CpuCompatConfigSchema } from '@motus/cpu-compat';
import { isMotusError, type HostCpuFacts, type Logger } from '@motus/sdk';
import { requireCommand, tempDir } from '../../support/system.js';
import { fixtureText } from '../support/fixtures.js';

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => quiet };

describe("cpu-compat agent side: the facts a heartbeat carries (real QEMU)", function () {
  this.timeout(120_000);
  let dir: { path: string; remove: () => void };

  before(() => {
    requireCommand('qemu-system-x86_64', 'qemu-system-x86');
    dir = tempDir('cpu-agent');
  });
  after(() => dir.remove());

  it('reports probing, then facts with the fit of a named baseline and the lab limits', async () => {
    const cpuinfo = join(dir.path, 'cpuinfo');
    writeFileSync(cpuinfo, fixtureText('cpuinfo-recorded.txt'));
    const config = CpuCompatConfigSchema.parse({ baseline: 'Westmere-v1', cpuinfoPath: cpuinfo, accelerator: 'tcg', hosts: { h1: { maxModel: 'Nehalem-v1' } } });
    const agent = new AgentCpu('h1', config, quiet);
    agent.start();
    expect(agent.facts()).to.deep.equal({ state: 'probing' });
    const { facts } = await agent.ready();
    agent.dispose();
    expect(agent.facts()).to.equal(facts);
    const f = facts as HostCpuFacts;
    expect(f.limits).to.deep.equal({ maxModel: 'Nehalem-v1' });
    expect(f.baseline?.cpu).to.equal('Westmere-v1');
    // Westmere adds AES-NI and PCLMULQDQ to Nehalem, which this host is limited to.
    expect(f.baseline?.ok).to.equal(false);
    expect(f.baseline?.missing).to.include.members(['aes', 'pclmulqdq']);
    // The JSON the agent protocol carries round-trips.
    expect(JSON.parse(JSON.stringify(f))).to.deep.equal(f);
  });

  it('reports malformed /proc/cpuinfo and an unknown lab model as coded errors', async () => {
    const bad = join(dir.path, 'bad-cpuinfo');
    writeFileSync(bad, 'processor\t: 0\nvendor_id\t: GenuineIntel\n');
    const agent = new AgentCpu('h2', CpuCompatConfigSchema.parse({ cpuinfoPath: bad, accelerator: 'tcg' }), quiet);
    const err = await agent.ready().catch((e: unknown) => e);
    agent.dispose();
    expect(isMotusError(err, 'MOTUS_E_CPU_CPUINFO'), String(err)).to.equal(true);
    expect(agent.facts()).to.deep.include({ code: 'MOTUS_E_CPU_CPUINFO' });
    expect((agent.facts() as { error: string }).error).to.contain('cpu family');

    const good = join(dir.path, 'cpuinfo2');
    writeFileSync(good, fixtureText('cpuinfo-recorded.txt'));
    const lab = new AgentCpu('h3', CpuCompatConfigSchema.parse({ cpuinfoPath: good, accelerator: 'tcg', hosts: { h3: { maxModel: 'Pentium9' } } }), quiet);
    const labErr = await lab.ready().catch((e: unknown) => e);
    lab.dispose();
    expect(isMotusError(labErr, 'MOTUS_E_CPU_UNKNOWN_MODEL'), String(labErr)).to.equal(true);
  });
});
