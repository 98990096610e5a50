import { expect } from 'chai';
import { Subject } from 'rxjs';
import { isMotusError, type MigrationEvent } from '@motus/sdk';
import {
  HostAgent,
  HttpHostLink,
  JsonLogger,
  MetricsRegistry,
  MotusServer,
  ServerMetrics,
  createAgentApi,
  createRootContainer,
  createServerApi,
  validateSite,
} from '@motus/core';
import { parseExposition, tempDir, valueOf, waitFor } from '../../support/index.js';
import { createFakeWorld, fakeHypervisorPlugin, fakeSpec } from '../support/fake-hypervisor.js';

/** JSON log lines written by one logger. */
function logSink(): { lines: Array<Record<string, unknown>>; write(line: string): void } {
  const lines: Array<Record<string, unknown>> = [];
  return { lines, write: (line) => void lines.push(JSON.parse(line) as Record<string, unknown>) };
}

function expectCode(fn: () => unknown, code: string): void {
  try {
    fn();
  } catch (err) {
    expect(isMotusError(err), String(err)).to.equal(true);
    expect((err as { code: string }).code).to.equal(code);
    return;
  }
  expect.fail(`expected ${code}`);
}

describe('metrics registry: Prometheus naming rules and the plugin view', () => {
  it('refuses names and labels that break the conventions, with MOTUS_E_METRIC_INVALID', () => {
    const registry = new MetricsRegistry();
    const plugin = registry.forPlugin('@example/p');
    expectCode(() => plugin.counter({ name: 'frames_total', help: 'x' }), 'MOTUS_E_METRIC_INVALID');
    expectCode(() => plugin.counter({ name: 'motus_frames', help: 'x' }), 'MOTUS_E_METRIC_INVALID');
    expectCode(() => plugin.gauge({ name: 'motus_queue_total', help: 'x' }), 'MOTUS_E_METRIC_INVALID');
    expectCode(() => plugin.gauge({ name: 'motus_Queue', help: 'x' }), 'MOTUS_E_METRIC_INVALID');
    expectCode(() => plugin.histogram({ name: 'motus_wait_seconds', help: 'x', labelNames: ['le'] }), 'MOTUS_E_METRIC_INVALID');
    const ok = plugin.counter({ name: 'motus_example_frames_total', help: 'Frames.', labelNames: ['port'] });
    // The same family from a second plugin (same kind and labels) is shared; a different shape is refused.
    registry.forPlugin('@example/q').counter({ name: 'motus_example_frames_total', help: 'Frames.', labelNames: ['port'] }).inc({ port: 'b' });
    expectCode(() => plugin.counter({ name: 'motus_example_frames_total', help: 'Again.', labelNames: ['nic'] }), 'MOTUS_E_METRIC_INVALID');
    expectCode(() => plugin.gauge({ name: 'motus_example_frames_total', help: 'Again.', labelNames: ['port'] }), 'MOTUS_E_METRIC_INVALID');
    plugin.sampled({ type: 'gauge', name: 'motus_example_depth', help: 'Depth.' }, () => []);
    expectCode(() => plugin.sampled({ type: 'gauge', name: 'motus_example_depth', help: 'Depth.' }, () => []), 'MOTUS_E_METRIC_INVALID');
    expectCode(() => ok.inc({ prot: 'a' }), 'MOTUS_E_METRIC_INVALID');
    ok.inc({ port: 'a' }, 3);
  });

  it('serves counters, gauges, histograms and sampled totals in a format that parses', async () => {
    const registry = new MetricsRegistry().withProcessDefaults();
    const plugin = registry.forPlugin('@example/p');
    plugin.counter({ name: 'motus_example_frames_total', help: 'Frames.', labelNames: ['port'] }).inc({ port: 'vm "1"\\a' }, 3);
    plugin.gauge({ name: 'motus_example_depth', help: 'Depth.', labelNames: ['port'] }).set({ port: 'a' }, 7);
    const h = plugin.histogram({ name: 'motus_example_wait_seconds', help: 'Wait.', labelNames: ['op'], buckets: [0.1, 1] });
    h.observe({ op: 'read' }, 0.05);
    h.observe({ op: 'read' }, 5);
    let ports = [{ labels: { port: 'p1' }, value: 10 }, { labels: { port: 'p2' }, value: 4 }];
    plugin.sampled({ type: 'counter', name: 'motus_example_sent_total', help: 'Sent.', labelNames: ['port'] }, () => ports);
    let families = parseExposition(await registry.exposition());
    expect(valueOf(families, 'motus_example_frames_total', { port: 'vm "1"\\a' })).to.equal(3);
    expect(valueOf(families, 'motus_example_depth', { port: 'a' })).to.equal(7);
    expect(valueOf(families, 'motus_example_wait_seconds_bucket', { op: 'read', le: '0.1' })).to.equal(1);
    expect(valueOf(families, 'motus_example_wait_seconds_count', { op: 'read' })).to.equal(2);
    expect(valueOf(families, 'motus_example_sent_total', { port: 'p2' })).to.equal(4);
    expect(families.get('process_cpu_user_seconds_total')?.type).to.equal('counter');
    expect(families.get('nodejs_eventloop_lag_seconds')?.type).to.equal('gauge');
    // A port that went away disappears rather than freezing at its last value.
    ports = [{ labels: { port: 'p1' }, value: 12 }];
    families = parseExposition(await registry.exposition());
    expect(valueOf(families, 'motus_example_sent_total', { port: 'p1' })).to.equal(12);
    expect(valueOf(families, 'motus_example_sent_total', { port: 'p2' })).to.equal(undefined);
  });

  it('the exposition reader refuses what Prometheus would refuse', () => {
    expect(() => parseExposition('# TYPE a counter\na{x="1} 1\n')).to.throw();
    expect(() => parseExposition('# TYPE a counter\na -1\n')).to.throw();
    expect(() => parseExposition('b 1\n')).to.throw(/no declared family/);
    expect(() => parseExposition('# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n')).to.throw(/below/);
    expect(() => parseExposition('# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n')).to.throw(/\+Inf/);
  });
});

describe('server metrics from the migration event stream', () => {
  const at = new Date().toISOString();
  const ev = (migrationId: string, seq: number, body: Record<string, unknown>) => ({ migrationId, seq, at, ...body }) as unknown as MigrationEvent;
  const progress = (bytes: number) => ({ type: 'progress', status: 'active', round: 1, totalBytes: 1000, transferredBytes: bytes, remainingBytes: 1000 - bytes, dirtyRateBytesPerSec: 0, throughputBytesPerSec: 1, etaMs: null, expectedDowntimeMs: null });

  it('counts outcomes once, bytes as deltas, and fills the downtime and duration histograms', async () => {
    const registry = new MetricsRegistry();
    const events = new Subject<MigrationEvent>();
    const meters = new ServerMetrics(registry, { migrations$: events, queuedTasks: () => 2, runningTasks: () => 1, hosts: () => [], vms: () => [] });
    events.next(ev('m1', 1, { type: 'validated' }));
    events.next(ev('m1', 2, progress(300)));
    events.next(ev('m1', 3, progress(700)));
    let families = parseExposition(await registry.exposition());
    expect(valueOf(families, 'motus_migration_transferred_bytes_total')).to.equal(700);
    events.next(ev('m1', 4, { type: 'completed', downtimeMs: 40, totalTimeMs: 3000, bytes: 1100, rounds: 2, controlPlaneMs: 5 }));
    // Cancelled while queued: cancelled, then rejected — one outcome.
    events.next(ev('m2', 1, { type: 'cancelled', by: 'olga' }));
    events.next(ev('m2', 2, { type: 'rejected', error: { code: 'MOTUS_E_MIGRATION_CANCELLED', message: 'x' }, vetoes: [] }));
    events.next(ev('m3', 1, { type: 'failed', phase: 'precopy', error: { code: 'MOTUS_E_MIGRATION_FAILED', message: 'x' } }));
    events.next(ev('m3', 2, { type: 'rolled-back', host: 'a', vmState: 'running' }));
    families = parseExposition(await registry.exposition());
    expect(valueOf(families, 'motus_migrations_total', { outcome: 'completed' })).to.equal(1);
    expect(valueOf(families, 'motus_migrations_total', { outcome: 'cancelled' })).to.equal(1);
    expect(valueOf(families, 'motus_migrations_total', { outcome: 'rejected' })).to.equal(0);
    expect(valueOf(families, 'motus_migrations_total', { outcome: 'failed' })).to.equal(1);
    expect(valueOf(families, 'motus_migration_transferred_bytes_total')).to.equal(1100);
    expect(valueOf(families, 'motus_migration_downtime_seconds_bucket', { le: '0.05' })).to.equal(1);
    expect(valueOf(families, 'motus_migration_downtime_seconds_bucket', { le: '0.025' })).to.equal(0);
    expect(valueOf(families, 'motus_migration_duration_seconds_sum')).to.equal(3);
    expect(valueOf(families, 'motus_task_queue_length')).to.equal(2);
    expect(valueOf(families, 'motus_tasks_running')).to.equal(1);
    meters.stop();
  });
});

describe('structured logs and metrics through the API and the agent protocol (fake hypervisor)', () => {
  const serverLog = logSink();
  const agentLogs = { 'host-a': logSink(), 'host-b': logSink() };
  let dir: { path: string; remove(): void };
  let server: MotusServer;
  let api: ReturnType<typeof createServerApi>;
  let url: string;
  const agents: Array<{ agent: HostAgent; api: ReturnType<typeof createAgentApi> }> = [];
  const token = 'admin-token-for-metrics';

  before(async () => {
    dir = tempDir('metrics-logs');
    const world = createFakeWorld();
    const site = validateSite({ hosts: [{ name: 'host-a', memoryMiB: 4096 }, { name: 'host-b', memoryMiB: 4096 }], plugins: [] });
    server = await MotusServer.start({
      stateDir: `${dir.path}/server`,
      logger: new JsonLogger(serverLog, 'debug', { role: 'server' }),
      container: createRootContainer(),
      migration: site.migration,
      plugins: [],
      limits: site,
    });
    for (const name of ['host-a', 'host-b'] as const) {
      const logger = new JsonLogger(agentLogs[name], 'debug', { role: 'agent', host: name });
      const agent = await HostAgent.start({
        name,
        stateDir: `${dir.path}/${name}`,
        migrationAddress: '127.0.0.1',
        memoryMiB: 4096,
        plugins: [{ definition: fakeHypervisorPlugin(world) }],
        logger,
        container: createRootContainer(),
      });
      const agentApi = createAgentApi(agent, 'agent-secret', logger);
      agents.push({ agent, api: agentApi });
      await server.addHost(new HttpHostLink({ name, url: await agentApi.listen('127.0.0.1:0'), token: 'agent-secret' }));
    }
    api = createServerApi(server, { apiToken: token, agentToken: 'agent-secret', logger: new JsonLogger(serverLog, 'debug', { role: 'server' }) });
    url = await api.listen('127.0.0.1:0');
  });

  after(async () => {
    await api.close();
    await server.stop();
    for (const { agent, api: agentApi } of agents) {
      await agentApi.close();
      await agent.stop();
    }
    dir.remove();
  });

  const call = (path: string, init: RequestInit = {}) => fetch(url + path, { ...init, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...(init.headers as Record<string, string>) } });

  it('carries one request id from the API call through the task to both agents, and counts the migration', async () => {
    await server.startVm(fakeSpec('vm-logs'), 'host-a');
    const response = await call('/v1/migrations', { method: 'POST', body: JSON.stringify({ vm: 'vm-logs', destination: 'host-b' }), headers: { 'x-request-id': 'req-e2e-42' } });
    expect(response.status).to.equal(202);
    expect(response.headers.get('x-request-id')).to.equal('req-e2e-42');
    const { id } = (await response.json()) as { id: string };
    await waitFor('the migration to complete', async () => ((await server.migration(id)).state === 'completed' ? true : undefined), 20_000);
    const tagged = (lines: Array<Record<string, unknown>>) => lines.filter((l) => l.requestId === 'req-e2e-42').map((l) => l.msg);
    expect(tagged(serverLog.lines)).to.include.members(['migration task queued', 'migration completed', 'request']);
    expect(tagged(agentLogs['host-b'].lines)).to.include('incoming migration ready');
    expect(tagged(agentLogs['host-a'].lines)).to.include('outgoing migration started');
    const task = (await (await call(`/v1/tasks/${id}`)).json()) as { requestId?: string };
    expect(task.requestId).to.equal('req-e2e-42');
    // Every line is one JSON object with time, level and message.
    for (const line of [...serverLog.lines, ...agentLogs['host-a'].lines]) expect(line).to.include.keys('time', 'level', 'msg');
    // A malformed request id is replaced, not echoed.
    const odd = await call('/v1/hosts', { headers: { 'x-request-id': 'bad id\twith spaces' } });
    expect(odd.headers.get('x-request-id')).to.match(/^r-[0-9a-f]{12}$/);

    const families = parseExposition(await (await call('/metrics')).text());
    expect(valueOf(families, 'motus_migrations_total', { outcome: 'completed' })).to.equal(1);
    expect(valueOf(families, 'motus_migration_downtime_seconds_count')).to.equal(1);
    expect(valueOf(families, 'motus_migration_transferred_bytes_total')).to.be.greaterThan(0);
    expect(valueOf(families, 'motus_http_requests_total', { method: 'POST', route: '/v1/migrations', status: '202' })).to.equal(1);
    const source = parseExposition(await (await call('/metrics/hosts/host-a')).text());
    expect(valueOf(source, 'motus_agent_migration_sent_bytes_total')).to.be.greaterThan(0);
    expect(valueOf(source, 'motus_http_requests_total', { method: 'POST', route: '/v1/vms/:name/migrate', status: '200' })).to.equal(1);
    expect((await fetch(`${url}/metrics`)).status).to.equal(401);
  });
});
