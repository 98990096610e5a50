import type { Logger } from '@motus/sdk';
import { HttpHostLink } from '../agent/http-host-link.js';
import { JsonHttpServer, STREAMED, startNdjson } from '../http/http-server.js';
import { parseRequest, StartVmRequestSchema } from '../kernel/request-schemas.js';
import { z } from 'zod';
import type { MotusServer } from './motus-server.js';

const RegisterAgentSchema = z.object({ name: z.string().min(1), url: z.string().url() }).strict();

export interface ServerApiOptions {
  /** Token of API users (CLI, SDK client). */
  apiToken: string;
  /** Token of the agent protocol, both ways. */
  agentToken: string;
  logger: Logger;
}

/**
 * The server's REST API. Agents register with the agent token; every other route
 * takes the API token.
 */
export function createServerApi(server: MotusServer, options: ServerApiOptions): JsonHttpServer {
  const api = new JsonHttpServer(options.apiToken, options.logger);
  const who = (req: { headers: Record<string, unknown> }) => String(req.headers['x-motus-user'] ?? 'api');
  api
    .route('GET', '/v1/health', async () => ({ ok: true }), { public: true })
    .route('GET', '/v1/hosts', async () => server.hosts())
    .route('GET', '/v1/vms', async () => server.vms())
    .route('POST', '/v1/vms', async ({ body }) => {
      const request = parseRequest(StartVmRequestSchema, body, 'VM start request');
      return server.startVm(request.spec, request.host);
    })
    .route('POST', '/v1/vms/:name/stop', async ({ params }) => server.stopVm(params.name!))
    .route('GET', '/v1/migrations', async () => server.migrations())
    .route('POST', '/v1/migrations', async ({ body, req }) => {
      const request = { requestedBy: who(req), ...((body ?? {}) as object) };
      const handle = await server.migrate(request as never);
      return server.migration(handle.id);
    })
    .route('GET', '/v1/migrations/:id', async ({ params }) => server.migration(params.id!))
    .route('POST', '/v1/migrations/:id/cancel', async ({ params, req }) => server.cancelMigration(params.id!, who(req)))
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
    .route('GET', '/v1/events', async ({ res, signal }) => {
      const out = startNdjson(res);
      const subscriptions = [
        server.migrations$.subscribe((e) => out.write({ stream: 'migration', ...e })),
        server.hosts$.subscribe((e) => out.write({ stream: 'host', ...e })),
        server.vms$.subscribe((e) => out.write({ stream: 'vm', ...e })),
      ];
      await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve()));
      subscriptions.forEach((s) => s.unsubscribe());
      out.end();
      return STREAMED;
    });

  api.route(
    'POST',
    '/v1/agents/register',
    async ({ body }) => {
      const request = parseRequest(RegisterAgentSchema, body, 'agent registration');
      return server.addHost(new HttpHostLink({ name: request.name, url: request.url, token: options.agentToken }));
    },
    { token: options.agentToken },
  );
  return api;
}
