import { z } from 'zod';
import type { Role } from '@motus/sdk';
import type { JsonHttpServer, RequestContext } from '../http/http-server.js';
import { parseRequest } from '../kernel/request-schemas.js';
import type { Principal } from './identity/roles.js';
import type { MotusServer } from './motus-server.js';

const RelocateSchema = z.object({ priority: z.enum(['high', 'normal']).optional() }).strict();
const MaintenanceSchema = z.object({ allowRunning: z.boolean().optional() }).strict();
const BalanceSchema = z.object({ apply: z.boolean().optional() }).strict();
const ClusterChangeSchema = z
  .object({
    mode: z.enum(['manual', 'partial', 'automatic']).optional(),
    threshold: z.number().int().min(1).max(5).optional(),
    intervalSeconds: z.number().positive().optional(),
  })
  .strict();

/**
 * The placement routes: host metrics and health, the migration wizard, clusters and
 * their balancing, maintenance mode. Reading is for viewers; acting for operators.
 */
export function addPlacementRoutes(api: JsonHttpServer, server: MotusServer): void {
  const me = (ctx: RequestContext): Principal => ctx.principal!;
  const as = (role: Role) => ({ role });
  const placement = server.placement;
  api
    .route('GET', '/v1/hosts/:name/usage', async ({ params }) => placement.metrics(params.name!))
    .route('GET', '/v1/hosts/:name/health', async ({ params }) => placement.health(params.name!))
    .route('GET', '/v1/vms/:name/placement', async ({ params }) => placement.recommend(params.name!))
    .route(
      'POST',
      '/v1/vms/:name/relocate',
      async (ctx) => {
        const request = parseRequest(RelocateSchema, ctx.body ?? {}, 'relocate request');
        const { ranking, task } = await placement.relocate(ctx.params.name!, request.priority ?? 'normal', me(ctx).user);
        return { ranking, task, migration: await server.migration(task.id) };
      },
      as('operator'),
    )
    .route('GET', '/v1/clusters', async () => placement.clusters())
    .route('PATCH', '/v1/clusters/:name', async (ctx) => placement.configure(ctx.params.name!, parseRequest(ClusterChangeSchema, ctx.body, 'cluster change'), me(ctx).user), as('operator'))
    .route('GET', '/v1/clusters/:name/balance', async (ctx) => placement.balance(ctx.params.name!, false, me(ctx).user))
    .route(
      'POST',
      '/v1/clusters/:name/balance',
      async (ctx) => placement.balance(ctx.params.name!, parseRequest(BalanceSchema, ctx.body ?? {}, 'balance request').apply ?? true, me(ctx).user),
      as('operator'),
    )
    .route('GET', '/v1/hosts/:name/maintenance', async ({ params }) => placement.evacuation(params.name!))
    .route(
      'POST',
      '/v1/hosts/:name/maintenance',
      async (ctx) => placement.enterMaintenance(ctx.params.name!, { allowRunning: parseRequest(MaintenanceSchema, ctx.body ?? {}, 'maintenance request').allowRunning ?? false, by: me(ctx).user }),
      as('operator'),
    )
    .route(
      'DELETE',
      '/v1/hosts/:name/maintenance',
      async (ctx) => {
        parseRequest(z.object({}).strict(), ctx.body ?? {}, 'request (this route takes no body fields)');
        return placement.exitMaintenance(ctx.params.name!, me(ctx).user);
      },
      as('operator'),
    );
}
