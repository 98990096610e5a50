import { MotusError, redact, type Logger, type Role, type ScheduleRequest } from '@motus/sdk';
import { z } from 'zod';
import { HttpHostLink } from '../agent/http-host-link.js';
import { JsonHttpServer, Reply, STREAMED, startNdjson, type RequestContext } from '../http/http-server.js';
import { consoleDir, StaticFiles } from '../http/static-files.js';
import { parseMigrationRequest, parseRequest, StartVmPlacementSchema, StartVmRequestSchema } from '../kernel/request-schemas.js';
import { httpMetrics } from '../metrics/http-metrics.js';
import { toCsv, toJsonLines } from './audit/audit-export.js';
import { NetCaptureRequestSchema, parseAuditParams, VmTagsSchema, ScheduleRequestSchema, SchedulePatchSchema, TaskRequestSchema, TokenRequestSchema, UserRequestSchema } from './api-schemas.js';
import { requireRole, type Principal } from './identity/roles.js';
import type { MotusServer } from './motus-server.js';
import { addPlacementRoutes } from './placement-api.js';
import type { AuthFailureLimits } from '../http/auth-failure-limiter.js';
import type { RenewableHost, ServerTlsManager } from '../security/server-tls.js';

const PLUGIN_ROUTE = '/v1/plugins/:plugin/:method';
/** A plugin method's body: its payload, which the plugin validates itself. */
const PluginCallSchema = z.object({ payload: z.unknown().optional() }).strict();
const RegisterAgentSchema = z.object({ name: z.string().min(1).max(63), url: z.string().url().max(512) }).strict();
const EnrollAgentSchema = z.object({ name: z.string().min(1).max(63), csr: z.string().min(1).max(16_384) }).strict();
/** Actions on a resource named by the path take no fields: anything sent is a mistake worth a 400. */
const EmptyBodySchema = z.object({}).strict();
const noBody = (ctx: { body: unknown }) => parseRequest(EmptyBodySchema, ctx.body ?? {}, 'request (this route takes no body fields)');

export interface ServerApiOptions {
  /**
   * The state folder's API token (client.json): it becomes a token of the first
   * admin, user `admin`. Every other token is made with `motus token create`.
   */
  apiToken?: string;
  /** Token of the agent protocol, both ways. */
  agentToken: string;
  logger: Logger;
  /** Folder of the built web console (default: the @motus/console workspace's dist/). */
  consoleDir?: string;
  /** HTTPS with the site CA: agents enroll for certificates and must present theirs to register. */
  tls?: ServerTlsManager;
  /** The names a host's certificate carries (its agent and migration addresses), or undefined for a host the site file does not list. */
  hostNames?: (host: string) => string[] | undefined;
  /** Failed authentications tolerated per client address before 429. */
  authFailureLimits?: AuthFailureLimits;
}

/**
 * The server's REST API. Agents register with the agent token; every other route
 * takes a user's token, and the route's role decides whether that user may call it.
 */
export function createServerApi(server: MotusServer, options: ServerApiOptions): JsonHttpServer {
  if (options.apiToken) server.identities.bootstrap(options.apiToken);
  const tls = options.tls;
  const api = new JsonHttpServer((token) => server.identities.authenticate(token), options.logger, {
    ...(tls ? { tls: tls.serverTls } : {}),
    ...(options.authFailureLimits ? { authFailureLimits: options.authFailureLimits } : {}),
    onDenied: (denied) =>
      server.audit.append({
        user: denied.user ?? 'anonymous',
        action: 'api.refused',
        outcome: denied.code,
        detail: { method: denied.method, path: denied.path, message: denied.message },
      }),
    onServed: httpMetrics(server.metricsRegistry),
  });
  const files = new StaticFiles(options.consoleDir ?? consoleDir());
  const me = (ctx: RequestContext): Principal => ctx.principal!;
  const as = (role: Role) => ({ role });
  api
    .route('GET', '/v1/health', async () => ({ ok: true }), { public: true })
    // The console's files hold no data (the page asks for a token and calls the API with it): public.
    .route('GET', '/', async () => new Reply(302, '', 'text/plain; charset=utf-8', { location: '/console/' }), { public: true })
    .route('GET', '/console/', async () => files.serve('index.html'), { public: true })
    .route('GET', '/console/:file', async ({ params }) => files.serve(params.file!), { public: true })
    // Metrics name hosts, VMs' ports and datastores: a reader's (viewer) token, like every other read.
    .route('GET', '/metrics', async () => new Reply(200, await server.metricsRegistry.exposition(), server.metricsRegistry.contentType))
    .route('GET', '/metrics/hosts/:name', async ({ params }) => new Reply(200, await server.liveHost(params.name!).link.metrics(), server.metricsRegistry.contentType))
    .route('GET', '/v1/whoami', async (ctx) => me(ctx))
    .route('GET', '/v1/hosts', async () => server.hosts())
    .route('GET', '/v1/vms', async () => server.vms())
    .route(
      'POST',
      '/v1/vms',
      async (ctx) => {
        const request = parseRequest(StartVmRequestSchema, ctx.body, 'VM start request');
        return server.startVm(request.spec, request.host, me(ctx).user);
      },
      as('operator'),
    )
    .route(
      'POST',
      '/v1/vms/placement',
      async (ctx) => server.recommendStart(parseRequest(StartVmPlacementSchema, ctx.body, 'VM placement request').spec),
      as('operator'),
    )
    .route(
      'POST',
      '/v1/vms/:name/stop',
      async (ctx) => {
        noBody(ctx);
        return server.stopVm(ctx.params.name!);
      },
      as('operator'),
    )
    .route(
      'PUT',
      '/v1/vms/:name/tags',
      async (ctx) => {
        const { tags } = parseRequest(VmTagsSchema, ctx.body, 'VM tags');
        const before = (await server.vms()).find((v) => v.name === ctx.params.name)?.spec.tags ?? [];
        const vm = server.setVmTags(ctx.params.name!, tags);
        server.audit.append({ user: me(ctx).user, action: 'vm.tags', outcome: 'changed', vm: vm.name, detail: { before, after: vm.spec.tags ?? [] } });
        return vm;
      },
      as('operator'),
    )
    .route('GET', '/v1/net', async () => server.network.stats())
    .route('POST', '/v1/net/capture', async ({ body }) => server.network.capture(parseRequest(NetCaptureRequestSchema, body ?? {}, 'capture request')), as('operator'))
    .route('GET', '/v1/migrations', async () => server.migrations())
    .route(
      'POST',
      '/v1/migrations',
      async (ctx) => {
        const request = parseMigrationRequest(ctx.body ?? {});
        const user = me(ctx).user;
        if (request.requestedBy !== undefined && request.requestedBy !== user) {
          throw new MotusError('MOTUS_E_FORBIDDEN', `requestedBy: a request is recorded as its token's user (${user}), not ${request.requestedBy}`, { field: 'requestedBy', user });
        }
        const handle = await server.migrate({ ...request, requestedBy: user });
        return new Reply(202, await server.migration(handle.id));
      },
      as('operator'),
    )
    .route('GET', '/v1/migrations/:id', async ({ params }) => server.migration(params.id!))
    .route(
      'POST',
      '/v1/migrations/:id/cancel',
      async (ctx) => {
        noBody(ctx);
        return server.tasks.cancel(ctx.params.id!, me(ctx).user);
      },
      as('operator'),
    )
    .route('GET', '/v1/migrations/:id/events', async ({ params, res, signal }) => {
      await server.migration(params.id!);
      const out = startNdjson(res);
      await new Promise<void>((resolve) => {
        const subscription = server.migrationEvents$(params.id!).subscribe({
          next: (event) => out.write(event),
          error: () => resolve(),
          complete: () => resolve(),
        });
        signal.addEventListener('abort', () => {
          subscription.unsubscribe();
          resolve();
        });
      });
      out.end();
      return STREAMED;
    })
    .route('GET', '/v1/tasks', async () => server.tasks.tasks())
    .route('GET', '/v1/tasks/:id', async ({ params }) => server.tasks.task(params.id!))
    .route(
      'POST',
      '/v1/tasks',
      async (ctx) => {
        const { ignoreRules, ...request } = parseRequest(TaskRequestSchema, ctx.body, 'task request');
        server.placement.checkDestination(request.vm, request.destination, { ignoreRules: ignoreRules ?? false, by: me(ctx).user });
        const { task } = await server.tasks.submit({ ...request, requestedBy: me(ctx).user });
        return new Reply(202, server.tasks.task(task.id));
      },
      as('operator'),
    )
    .route(
      'POST',
      '/v1/tasks/:id/cancel',
      async (ctx) => {
        noBody(ctx);
        return server.tasks.cancel(ctx.params.id!, me(ctx).user);
      },
      as('operator'),
    )
    .route('GET', '/v1/schedules', async () => server.schedules.list())
    .route('GET', '/v1/schedules/:id', async ({ params }) => server.schedules.get(params.id!))
    .route(
      'POST',
      '/v1/schedules',
      async (ctx) => server.schedules.create(parseRequest(ScheduleRequestSchema, ctx.body, 'schedule') as ScheduleRequest, me(ctx)),
      as('operator'),
    )
    .route(
      'PATCH',
      '/v1/schedules/:id',
      async (ctx) => server.schedules.update(ctx.params.id!, parseRequest(SchedulePatchSchema, ctx.body, 'schedule change') as Partial<ScheduleRequest>, me(ctx)),
      as('operator'),
    )
    .route(
      'DELETE',
      '/v1/schedules/:id',
      async (ctx) => {
        noBody(ctx);
        server.schedules.remove(ctx.params.id!, me(ctx));
        return {};
      },
      as('operator'),
    )
    .route('POST', PLUGIN_ROUTE, async (ctx) => {
      // Plugins name the least role of each method; the route itself only needs a user.
      const method = server.pluginMethod(ctx.params.plugin!, ctx.params.method!);
      requireRole(me(ctx), method.role, `${ctx.params.plugin} ${ctx.params.method}`);
      const { payload } = parseRequest(PluginCallSchema, ctx.body ?? {}, 'plugin call');
      const result = (await method.call(payload ?? {})) ?? null;
      // Methods beyond viewer change something: the trail says who did what.
      if (method.role !== 'viewer') {
        server.audit.append({ user: me(ctx).user, action: 'plugin.call', outcome: 'done', detail: { plugin: ctx.params.plugin!, method: ctx.params.method!, payload: payload ?? {} } });
      }
      return { result };
    })
    .route('GET', '/v1/ca', async () => {
      if (!tls) throw new MotusError('MOTUS_E_NOT_FOUND', 'this server runs without a site CA (in-process platform)');
      return tls.ca.info();
    })
    .route(
      'POST',
      '/v1/ca/rotate',
      async (ctx) => {
        noBody(ctx);
        if (!tls) throw new MotusError('MOTUS_E_NOT_FOUND', 'this server runs without a site CA (in-process platform)');
        const hosts = (await server.hosts())
          .filter((h) => h.state !== 'disconnected')
          .map((h) => server.hostLink(h.name))
          .filter((link): link is HttpHostLink => link instanceof HttpHostLink) as RenewableHost[];
        const result = await tls.rotate(hosts);
        server.audit.append({
          user: me(ctx).user,
          action: 'ca.rotate',
          outcome: result.failed.length === 0 ? 'rotated' : 'rotated-partly',
          detail: { generation: result.ca.generation, fingerprint256: result.ca.fingerprint256, renewed: result.renewed, failed: result.failed },
        });
        return result;
      },
      as('admin'),
    )
    .route('GET', '/v1/audit', async ({ query }) => {
      const params = parseAuditParams(query);
      const { format, ...filter } = params;
      const records = server.audit.query(filter);
      if (format === 'jsonl') return new Reply(200, toJsonLines(records), 'application/x-ndjson');
      if (format === 'csv') return new Reply(200, toCsv(records), 'text/csv; charset=utf-8');
      return records;
    }, { query: ['vm', 'user', 'host', 'since', 'until', 'limit', 'format'] })
    .route('GET', '/v1/audit/verify', async () => server.audit.verify())
    .route('GET', '/v1/users', async () => server.identities.users(), as('admin'))
    .route(
      'POST',
      '/v1/users',
      async (ctx) => {
        const request = parseRequest(UserRequestSchema, ctx.body, 'user');
        const user = server.identities.addUser(request.name, request.role as Role, me(ctx).user);
        server.audit.append({ user: me(ctx).user, action: 'user.add', outcome: 'added', detail: { name: user.name, role: user.role } });
        return user;
      },
      as('admin'),
    )
    .route(
      'DELETE',
      '/v1/users/:name',
      async (ctx) => {
        noBody(ctx);
        server.identities.removeUser(ctx.params.name!);
        server.audit.append({ user: me(ctx).user, action: 'user.remove', outcome: 'removed', detail: { name: ctx.params.name! } });
        return {};
      },
      as('admin'),
    )
    .route('GET', '/v1/tokens', async ({ query }) => server.identities.tokens(query.get('user') ?? undefined), { role: 'admin', query: ['user'] })
    .route(
      'POST',
      '/v1/tokens',
      async (ctx) => {
        const request = parseRequest(TokenRequestSchema, ctx.body, 'token request');
        const token = server.identities.createToken(request.user, request.label ?? '');
        server.audit.append({ user: me(ctx).user, action: 'token.create', outcome: 'created', detail: { token: token.id, for: token.user, label: token.label } });
        return token;
      },
      as('admin'),
    )
    .route(
      'POST',
      '/v1/tokens/:id/revoke',
      async (ctx) => {
        noBody(ctx);
        const token = server.identities.revokeToken(ctx.params.id!);
        server.audit.append({ user: me(ctx).user, action: 'token.revoke', outcome: 'revoked', detail: { token: token.id, for: token.user } });
        return token;
      },
      as('admin'),
    )
    .route('GET', '/v1/events', async ({ res, signal }) => {
      const out = startNdjson(res);
      const subscriptions = [
        server.migrations$.subscribe((e) => out.write(redact({ stream: 'migration', ...e }))),
        server.hosts$.subscribe((e) => out.write(redact({ stream: 'host', ...e }))),
        server.vms$.subscribe((e) => out.write(redact({ stream: 'vm', ...e }))),
        server.audit.records$.subscribe((record) => out.write(redact({ stream: 'audit', type: 'audit-appended', at: record.at, record }))),
      ];
      await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve()));
      subscriptions.forEach((s) => s.unsubscribe());
      out.end();
      return STREAMED;
    });

  addPlacementRoutes(api, server);
  api.route(
    'POST',
    '/v1/agents/enroll',
    async ({ body }) => {
      const request = parseRequest(EnrollAgentSchema, body, 'agent enrolment');
      if (!tls) throw new MotusError('MOTUS_E_NOT_FOUND', 'this server runs without a site CA: agents speak plain HTTP to it');
      const names = options.hostNames?.(request.name);
      if (!names) throw new MotusError('MOTUS_E_HOST_NOT_FOUND', `host ${request.name} is not in the site file`, { host: request.name });
      return tls.enroll(request.name, request.csr, names);
    },
    { token: options.agentToken },
  );
  api.route(
    'POST',
    '/v1/agents/register',
    async ({ body, peer }) => {
      const request = parseRequest(RegisterAgentSchema, body, 'agent registration');
      if (tls) {
        // The agent token is shared by every host; the certificate proves which host this is.
        if (!peer || peer.role !== 'host' || peer.name !== request.name) {
          throw new MotusError('MOTUS_E_UNAUTHORIZED', `host ${request.name} must register with its own certificate from the site CA${peer ? ` (this one is for ${peer.role} ${peer.name})` : ''}`, { host: request.name });
        }
        if (!request.url.startsWith('https:')) throw new MotusError('MOTUS_E_INVALID_REQUEST', 'url: agents of a site with a CA listen on https', { field: 'url' });
      }
      return server.addHost(new HttpHostLink({ name: request.name, url: request.url, token: options.agentToken, ...(tls ? { tls: tls.agentClientTls } : {}) }));
    },
    { token: options.agentToken },
  );
  // Last, so that it lists itself and every route above; each plugin method is a
  // route of its own with the role the plugin gave it (a new one is swept too).
  api.route('GET', '/v1/routes', async () =>
    api.routeTable().flatMap((entry) =>
      entry.path === PLUGIN_ROUTE
        ? server.pluginMethods().map(({ plugin, method, role }) => ({ ...entry, path: `/v1/plugins/${encodeURIComponent(plugin)}/${encodeURIComponent(method)}`, role }))
        : [entry],
    ),
  );
  tls?.onChange((credentials) => api.setTls(credentials));
  return api;
}
