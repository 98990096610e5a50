import type { Logger, MigrationTuning, VmSpec } from '@motus/sdk';
import { JsonHttpServer, Reply, STREAMED, startNdjson, type PeerIdentity } from '../http/http-server.js';
import { httpMetrics } from '../metrics/http-metrics.js';
import { parseRequest } from '../kernel/request-schemas.js';
import type { AuthFailureLimits } from '../http/auth-failure-limiter.js';
import type { HostCredentials } from '../security/host-credentials.js';
import { EmptyOrderSchema, IncomingOrderSchema, InstallCredentialsSchema, MigrateOrderSchema, PluginCallSchema, RenewCredentialsSchema, StartVmOrderSchema, TuneOrderSchema, FirstHeartbeatOrderSchema, LinkProbeOrderSchema, LinkProbeSinkOrderSchema } from './agent-schemas.js';
import type { HostAgent } from './host-agent.js';

export interface AgentApiOptions {
  /** HTTPS with the host's credentials; then only a client certificate of the server role (site CA) may give orders. */
  credentials?: HostCredentials;
  /** Failed authentications tolerated per client address before 429 (the site's `server.authFailures`). */
  authFailureLimits?: AuthFailureLimits;
}

/** The rule of an agent under TLS: orders come from its server, proven by the server's certificate. */
export function serverOnly(peer: PeerIdentity | undefined): string | undefined {
  if (!peer) return 'this agent takes orders only from its server: present the server certificate of the site CA';
  if (peer.role !== 'server') return `this agent takes orders only from its server, not from a ${peer.role} certificate (${peer.name})`;
  return undefined;
}

/**
 * The agent protocol: the server's orders to one host over HTTP(S) with a bearer
 * token (and, under TLS, the server's client certificate). An outgoing migration
 * answers with an NDJSON stream of progress samples that ends with the terminal
 * one; an error mid-stream is sent as a last `{error}` line.
 */
export function createAgentApi(agent: HostAgent, token: string, logger: Logger, options: AgentApiOptions = {}): JsonHttpServer {
  const credentials = options.credentials;
  const api = new JsonHttpServer(token, logger, {
    onServed: httpMetrics(agent.metricsRegistry),
    ...(credentials ? { tls: credentials.serverTls, requirePeer: serverOnly } : {}),
    ...(options.authFailureLimits ? { authFailureLimits: options.authFailureLimits } : {}),
  });
  const vmName = (params: Record<string, string>) => params.name!;
  const empty = (body: unknown) => parseRequest(EmptyOrderSchema, body ?? {}, 'order (this route takes no body fields)');
  const onVm = (verb: string, act: (name: string) => Promise<unknown>) =>
    api.route('POST', `/v1/vms/:name/${verb}`, async ({ params, body }) => {
      empty(body);
      return act(vmName(params));
    });
  api
    .route('GET', '/v1/facts', async () => agent.facts())
    // The agent token guards it like every agent route; Prometheus reads it through the server (GET /metrics/hosts/:name).
    .route('GET', '/metrics', async () => new Reply(200, await agent.metrics(), agent.metricsRegistry.contentType))
    .route('POST', '/v1/vms', async ({ body }) => agent.startVm(parseRequest(StartVmOrderSchema, body, 'VM start order').spec as VmSpec))
    .route('POST', '/v1/vms/:name/incoming', async ({ body }) => {
      const order = parseRequest(IncomingOrderSchema, body, 'incoming migration order');
      return agent.prepareIncoming(order.spec as VmSpec, order.migrationId, order.tuning as MigrationTuning | undefined, order.tls ? { tls: true } : {});
    })
    .route('POST', '/v1/vms/:name/migrate', async ({ params, body, res, signal }) => {
      const order = parseRequest(MigrateOrderSchema, body, 'migration order');
      const progress = agent.migrateOut(vmName(params), order.uri, order.tuning as MigrationTuning, order.migrationId, signal, order.tls ? { tls: order.tls } : {});
      const first = await progress.next();
      const out = startNdjson(res);
      try {
        if (!first.done) out.write({ progress: first.value });
        for await (const sample of progress) out.write({ progress: sample });
      } catch (err) {
        out.write({ error: (err as { toJSON?: () => unknown }).toJSON?.() ?? { code: 'MOTUS_E_INTERNAL', message: String(err) } });
      }
      out.end();
      return STREAMED;
    })
    .route('POST', '/v1/link-probe/sink', async ({ body }) => agent.openLinkProbe(parseRequest(LinkProbeSinkOrderSchema, body ?? {}, 'link probe sink order').lifetimeMs))
    .route('POST', '/v1/link-probe', async ({ body }) => {
      const { sink, ...options } = parseRequest(LinkProbeOrderSchema, body ?? {}, 'link probe order');
      return agent.probeLink(sink, options);
    })
    .route('POST', '/v1/vms/:name/tune', async ({ params, body }) => agent.tuneMigration(vmName(params), parseRequest(TuneOrderSchema, body ?? {}, 'tuning order').tuning as MigrationTuning))
    .route('POST', '/v1/vms/:name/first-heartbeat', async ({ params, body }) => ({
      at: await agent.firstHeartbeat(vmName(params), parseRequest(FirstHeartbeatOrderSchema, body ?? {}, 'first heartbeat order').timeoutMs ?? 0),
    }))
    .route('GET', '/v1/vms/:name/state', async ({ params }) => ({ state: await agent.runState(vmName(params)) }))
    .route('POST', '/v1/plugins/:plugin/:method', async ({ params, body }) => ({
      result: (await agent.pluginCall(params.plugin!, params.method!, parseRequest(PluginCallSchema, body ?? {}, 'plugin call').payload)) ?? null,
    }));
  if (credentials) {
    // A rotation, step by step: trust the new CA, make a new key, then answer with the new certificate.
    api
      .route('POST', '/v1/credentials/renew', async ({ body }) => {
        const { ca } = parseRequest(RenewCredentialsSchema, body, 'credentials renewal');
        credentials.trust(ca);
        api.setTls(credentials.serverTls);
        return { csr: await credentials.request() };
      })
      .route('POST', '/v1/credentials/install', async ({ body }) => {
        const { cert, ca } = parseRequest(InstallCredentialsSchema, body, 'credentials');
        credentials.install(cert, ca);
        api.setTls(credentials.serverTls);
        logger.info('host certificate renewed', { host: credentials.host });
        return {};
      });
  }
  onVm('stop', (name) => agent.stopVm(name));
  onVm('continue', (name) => agent.continueMigration(name));
  onVm('postcopy', (name) => agent.startPostcopy(name));
  onVm('cancel', (name) => agent.cancelMigration(name));
  onVm('resume', (name) => agent.resume(name));
  onVm('announce', (name) => agent.announce(name));
  onVm('commit-incoming', (name) => agent.commitIncoming(name));
  onVm('abort-incoming', (name) => agent.abortIncoming(name));
  onVm('finish-outgoing', (name) => agent.finishOutgoing(name));
  onVm('acquire-storage', (name) => agent.acquireStorage(name));
  onVm('release-storage', (name) => agent.releaseStorage(name));
  // The route table, for the security sweep: under TLS every one of them wants the server's certificate.
  api.route('GET', '/v1/routes', async () => api.routeTable());
  return api;
}
