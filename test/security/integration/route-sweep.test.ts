/**
 * The all-routes security sweep. The routes come from the running motusd itself
 * (`GET /v1/routes`: its route table, each plugin method a route of its own) and
 * from one of its agents, so a route added tomorrow is swept without touching this
 * file. Against a real all-in-one site: every route without a token answers 401,
 * a viewer's token on every route above viewer 403, an oversize body 413 and a
 * malformed or schema-invalid body 400 on every route that reads one; afterwards
 * the daemon and its agents still answer and no state changed. The agents take
 * orders only with the server's client certificate: without one, or with a host's,
 * every agent route answers 401.
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MotusClient } from '@motus/sdk';
import { JsonLogger, SiteCa } from '@motus/core';
import { alive, requireCommand, startSite, type TestSite } from '../../support/index.js';
import { rawRequest, type RawAnswer } from '../support/https.js';

interface RouteEntry {
  method: string;
  path: string;
  public: boolean;
  ownToken: boolean;
  role: 'viewer' | 'operator' | 'admin';
  query: string[];
  body: boolean;
}

const LIMIT = 1 << 20;
const PUBLIC_ROUTES = ['GET /', 'GET /console/', 'GET /console/:file', 'GET /v1/health'];

/** A route's path with its parameters filled with names nothing in the site has. */
function concrete(path: string): string {
  return path.replace(/:file\b/, 'index.html').replace(/:([a-zA-Z]+)/g, (_m, key: string) => `sweep-no-such-${key}`);
}

const label = (r: RouteEntry) => `${r.method} ${r.path}`;

describe('security sweep: every route of the server and of the agents (real all-in-one site)', function () {
  this.timeout(600_000);
  let site: TestSite;
  let url: string;
  let ca: string;
  let admin: string;
  let viewer: string;
  let agentToken: string;
  let agentUrl: string;
  let serverCert: { cert: string; key: string };
  let hostCert: { cert: string; key: string };
  let routes: RouteEntry[];
  let agentRoutes: RouteEntry[];
  let stateBefore: string;
  let auditBefore: number;
  const failures: string[] = [];

  function expectAnswer(what: string, answer: RawAnswer, status: number, code: string): void {
    if (answer.status !== status || answer.code !== code) failures.push(`${what}: expected ${status} ${code}, got ${answer.status} ${answer.code ?? answer.text.slice(0, 200)}`);
  }

  /** Everything a refused request must not change, in a form that compares. */
  async function snapshot(client: MotusClient): Promise<string> {
    const [hosts, vms, migrations, tasks, schedules, users, tokens, clusters, caInfo] = await Promise.all([
      client.hosts(),
      client.vms(),
      client.migrations(),
      client.tasks(),
      client.schedules(),
      client.users(),
      client.tokens(),
      client.clusters(),
      client.ca(),
    ]);
    return JSON.stringify({
      hosts: hosts.map((h) => [h.name, h.state, h.url]),
      vms,
      migrations,
      tasks,
      schedules,
      users,
      tokens: tokens.map((t) => [t.id, t.user, t.revokedAt ?? null]),
      clusters: clusters.map((c) => [c.name, c.mode, c.threshold, c.hosts.map((h) => h.name)]),
      ca: caInfo,
    });
  }

  before(async () => {
    requireCommand('qemu-system-x86_64', 'qemu-system-x86');
    requireCommand('openssl', 'openssl');
    site = await startSite(`
site: sweep
server:
  # The sweep makes hundreds of refused requests from 127.0.0.1, the address the
  # server also reaches its agents from: no lockout may get in its way.
  authFailures: { maxFailures: 1000000, windowSeconds: 1 }
hosts: [{ name: host-a, memoryMiB: 1024 }, { name: host-b, memoryMiB: 1024 }]
plugins:
  - package: '@motus/hv-qemu'
  - package: '@motus/cpu-compat'
    config: { baseline: auto, cluster: [host-a, host-b] }
  - package: '@motus/storage-iscsi'
    config:
      datastores:
        - name: san-sweep
          portal: '127.0.0.1:1'
          target: 'iqn.2026-01.org.motus.test:sweep'
          hosts: [host-a, host-b]
`);
    ({ url, ca, token: admin } = JSON.parse(readFileSync(join(site.stateDir, 'client.json'), 'utf8')) as { url: string; ca: string; token: string });
    await site.client.addUser('vera', 'viewer');
    viewer = (await site.client.createToken('vera', 'sweep')).token;
    agentToken = readFileSync(join(site.stateDir, 'server', 'agent-token'), 'utf8').trim();
    // A client certificate of the server role, from the site CA on disk (what an
    // operator with the server's state folder can do): the one identity agents obey.
    const siteCa = await SiteCa.open(join(site.stateDir, 'server', 'pki'), 'sweep', new JsonLogger({ write: () => undefined }, 'error'));
    serverCert = await siteCa.issueWithKey({ name: 'motusd', role: 'server', altNames: ['127.0.0.1'] });
    const hostPki = join(site.stateDir, 'agents', 'host-b', 'pki');
    hostCert = { cert: readFileSync(join(hostPki, 'cert.pem'), 'utf8'), key: readFileSync(join(hostPki, 'key.pem'), 'utf8') };
    agentUrl = (await site.client.hosts()).find((h) => h.name === 'host-a')!.url;
    const listed = await rawRequest({ method: 'GET', url: `${url}/v1/routes`, ca, token: viewer });
    expect(listed.status, listed.text).to.equal(200);
    routes = JSON.parse(listed.text) as RouteEntry[];
    const agentListed = await rawRequest({ method: 'GET', url: `${agentUrl}/v1/routes`, ca, token: agentToken, cert: serverCert });
    expect(agentListed.status, agentListed.text).to.equal(200);
    agentRoutes = JSON.parse(agentListed.text) as RouteEntry[];
    stateBefore = await snapshot(site.client);
    auditBefore = (await site.client.audit()).length;
  });

  after(async () => {
    await site?.stop();
  });

  /** Every wrong answer of a sweep at once, rather than the first. */
  function noFailures(): void {
    const list = failures.splice(0);
    if (list.length > 0) throw new Error(`${list.length} wrong answer(s):\n  ${list.join('\n  ')}`);
  }

  it('takes the routes from the server, plugin methods included, and from an agent', () => {
    const names = routes.map(label);
    // Each plugin method is its own entry with the plugin's role; the generic pattern is not swept as such.
    expect(names).to.include.members(['POST /v1/plugins/%40motus%2Fstorage-iscsi/preempt', 'POST /v1/plugins/%40motus%2Fcpu-compat/check', 'GET /v1/routes']);
    expect(names).not.to.include('POST /v1/plugins/:plugin/:method');
    expect(routes.find((r) => r.path.endsWith('storage-iscsi/preempt'))!.role).to.equal('admin');
    expect(agentRoutes.map(label)).to.include.members(['POST /v1/vms/:name/migrate', 'POST /v1/credentials/install', 'GET /v1/routes']);
    // A route reachable without a token is a decision: this list changes only on purpose.
    expect(routes.filter((r) => r.public).map(label).sort()).to.deep.equal(PUBLIC_ROUTES);
    expect(agentRoutes.filter((r) => r.public)).to.deep.equal([]);
    // Every route that takes a body changes something, so it needs more than a viewer — except plugin methods their plugin declares reads.
    const openWrites = routes.filter((r) => r.body && !r.ownToken && r.role === 'viewer' && !r.path.startsWith('/v1/plugins/'));
    expect(openWrites.map(label)).to.deep.equal([]);
    console.log(`      ${routes.length} server routes (${routes.filter((r) => r.path.startsWith('/v1/plugins/')).length} plugin methods), ${agentRoutes.length} agent routes`);
  });

  it('answers 401 to every route without a token, and to a wrong one', async () => {
    for (const r of routes.filter((r) => !r.public)) {
      const path = concrete(r.path);
      expectAnswer(`${label(r)} without a token`, await rawRequest({ method: r.method, url: url + path, ca, ...(r.body ? { body: '{}' } : {}) }), 401, 'MOTUS_E_UNAUTHORIZED');
      expectAnswer(`${label(r)} with a made-up token`, await rawRequest({ method: r.method, url: url + path, ca, token: 'mt_sweepNotAToken', ...(r.body ? { body: '{}' } : {}) }), 401, 'MOTUS_E_UNAUTHORIZED');
    }
    noFailures();
  });

  it("answers 403 to a viewer's token on every route that needs more than a viewer (401 on the agents' token routes)", async () => {
    const above = routes.filter((r) => !r.public && (r.ownToken || r.role !== 'viewer'));
    expect(above.length).to.be.greaterThan(20);
    for (const r of above) {
      const answer = await rawRequest({ method: r.method, url: url + concrete(r.path), ca, token: viewer, ...(r.body ? { body: '{}' } : {}) });
      if (r.ownToken) expectAnswer(`${label(r)} with a viewer token`, answer, 401, 'MOTUS_E_UNAUTHORIZED');
      else expectAnswer(`${label(r)} with a viewer token`, answer, 403, 'MOTUS_E_FORBIDDEN');
    }
    noFailures();
  });

  it('answers 413 to an oversize body and 400 to malformed JSON and to schema-invalid bodies on every route that reads a body', async () => {
    const withBody = routes.filter((r) => r.body && !r.public);
    expect(withBody.length).to.be.greaterThan(20);
    const oversize = Buffer.alloc(LIMIT + 1, 0x20);
    for (const r of withBody) {
      const target = { method: r.method, url: url + concrete(r.path), ca, token: r.ownToken ? agentToken : admin, ...(r.path === '/v1/agents/register' ? { cert: hostCert } : {}) };
      expectAnswer(`${label(r)} with ${oversize.length} bytes`, await rawRequest({ ...target, body: oversize }), 413, 'MOTUS_E_PAYLOAD_TOO_LARGE');
      for (const body of ['{"vm": "x"', '{]', 'not json', '\u0000\u0001']) {
        expectAnswer(`${label(r)} with malformed ${JSON.stringify(body)}`, await rawRequest({ ...target, body }), 400, 'MOTUS_E_INVALID_REQUEST');
      }
      for (const body of ['{"sweepUnknownField": true}', 'null', '[]', '42', '"text"', 'true']) {
        expectAnswer(`${label(r)} with schema-invalid ${body}`, await rawRequest({ ...target, body }), 400, 'MOTUS_E_INVALID_REQUEST');
      }
    }
    noFailures();
  });

  it("refuses every agent route without the server's client certificate, or with a host's (401), and checks the agents' bodies too", async () => {
    for (const r of agentRoutes) {
      const target = { method: r.method, url: agentUrl + concrete(r.path), ca, token: agentToken, ...(r.body ? { body: '{}' } : {}) };
      expectAnswer(`agent ${label(r)} without a client certificate`, await rawRequest(target), 401, 'MOTUS_E_UNAUTHORIZED');
      expectAnswer(`agent ${label(r)} with host-b's certificate`, await rawRequest({ ...target, cert: hostCert }), 401, 'MOTUS_E_UNAUTHORIZED');
      const { token: _token, ...noToken } = target;
      expectAnswer(`agent ${label(r)} with the server certificate and no token`, await rawRequest({ ...noToken, cert: serverCert }), 401, 'MOTUS_E_UNAUTHORIZED');
      if (!r.body) continue;
      const ordered = { ...target, cert: serverCert };
      expectAnswer(`agent ${label(r)} with ${LIMIT + 1} bytes`, await rawRequest({ ...ordered, body: Buffer.alloc(LIMIT + 1, 0x20) }), 413, 'MOTUS_E_PAYLOAD_TOO_LARGE');
      expectAnswer(`agent ${label(r)} with malformed JSON`, await rawRequest({ ...ordered, body: '{"spec": ' }), 400, 'MOTUS_E_INVALID_REQUEST');
      for (const body of ['{"sweepUnknownField": true}', 'null', '[]', '42']) {
        expectAnswer(`agent ${label(r)} with schema-invalid ${body}`, await rawRequest({ ...ordered, body }), 400, 'MOTUS_E_INVALID_REQUEST');
      }
    }
    noFailures();
  });

  it('still answers afterwards, with every process alive and nothing changed but the refusals in the audit trail', async () => {
    expect(alive(site.serverPid), 'motusd').to.equal(true);
    for (const [host, pid] of site.agentPids) expect(alive(pid), `agent ${host}`).to.equal(true);
    const health = await rawRequest({ method: 'GET', url: `${url}/v1/health`, ca });
    expect(health.status).to.equal(200);
    const facts = await rawRequest({ method: 'GET', url: `${agentUrl}/v1/facts`, ca, token: agentToken, cert: serverCert });
    expect(facts.status, facts.text).to.equal(200);
    // Host states are in the snapshot (the unreachable portal of san-sweep degrades both hosts from the start).
    expect((await site.client.hosts()).map((h) => h.state)).not.to.include('disconnected');
    expect(await snapshot(site.client)).to.equal(stateBefore);
    const added = (await site.client.audit()).slice(auditBefore);
    expect(added.length).to.be.greaterThan(0);
    expect([...new Set(added.map((r) => r.action))]).to.deep.equal(['api.refused']);
    await site.client.verifyAudit();
  });
});
