import type { Logger, MigrationTuning, VmSpec } from '@motus/sdk';
import { JsonHttpServer, Reply, STREAMED, startNdjson } from '../http/http-server.js';
import { httpMetrics } from '../metrics/http-metrics.js';
import type { HostAgent } from './host-agent.js';

/**
 * The agent protocol: the server's orders to one host over HTTP with a bearer token.
 * An outgoing migration answers with an NDJSON stream of progress samples that ends
 * with the terminal one; an error mid-stream is sent as a last `{error}` line.
 */
export function createAgentApi(agent: HostAgent, token: string, logger: Logger): JsonHttpServer {
  const api = new JsonHttpServer(token, logger, { onServed: httpMetrics(agent.metricsRegistry) });
  const vmName = (params: Record<string, string>) => params.name!;
  const body = (value: unknown) => (value ?? {}) as Record<string, unknown>;
  api
    .route('GET', '/v1/facts', async () => agent.facts())
    // The agent token guards it like every agent route; Prometheus reads it through the server (GET /metrics/hosts/:name).
    .route('GET', '/metrics', async () => new Reply(200, await agent.metrics(), agent.metricsRegistry.contentType))
    .route('POST', '/v1/vms', async ({ body: b }) => agent.startVm(body(b).spec as VmSpec))
    .route('POST', '/v1/vms/:name/stop', async ({ params }) => agent.stopVm(vmName(params)))
    .route('POST', '/v1/vms/:name/incoming', async ({ body: b }) =>
      agent.prepareIncoming(body(b).spec as VmSpec, String(body(b).migrationId ?? ''), body(b).tuning as MigrationTuning | undefined),
    )
    .route('POST', '/v1/vms/:name/migrate', async ({ params, body: b, res, signal }) => {
      const { uri, tuning, migrationId } = body(b) as { uri: string; tuning: MigrationTuning; migrationId: string };
      const progress = agent.migrateOut(vmName(params), uri, tuning ?? {}, migrationId ?? '', signal);
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
    .route('POST', '/v1/vms/:name/continue', async ({ params }) => agent.continueMigration(vmName(params)))
    .route('POST', '/v1/vms/:name/tune', async ({ params, body: b }) => agent.tuneMigration(vmName(params), (body(b).tuning ?? {}) as MigrationTuning))
    .route('POST', '/v1/vms/:name/postcopy', async ({ params }) => agent.startPostcopy(vmName(params)))
    .route('POST', '/v1/vms/:name/first-heartbeat', async ({ params, body: b }) => ({
      at: await agent.firstHeartbeat(vmName(params), Number(body(b).timeoutMs ?? 0)),
    }))
    .route('POST', '/v1/vms/:name/cancel', async ({ params }) => agent.cancelMigration(vmName(params)))
    .route('GET', '/v1/vms/:name/state', async ({ params }) => ({ state: await agent.runState(vmName(params)) }))
    .route('POST', '/v1/vms/:name/resume', async ({ params }) => agent.resume(vmName(params)))
    .route('POST', '/v1/vms/:name/announce', async ({ params }) => agent.announce(vmName(params)))
    .route('POST', '/v1/vms/:name/commit-incoming', async ({ params }) => agent.commitIncoming(vmName(params)))
    .route('POST', '/v1/vms/:name/abort-incoming', async ({ params }) => agent.abortIncoming(vmName(params)))
    .route('POST', '/v1/vms/:name/finish-outgoing', async ({ params }) => agent.finishOutgoing(vmName(params)))
    .route('POST', '/v1/vms/:name/acquire-storage', async ({ params }) => agent.acquireStorage(vmName(params)))
    .route('POST', '/v1/vms/:name/release-storage', async ({ params }) => agent.releaseStorage(vmName(params)))
    .route('POST', '/v1/plugins/:plugin/:method', async ({ params, body: b }) => ({
      result: (await agent.pluginCall(params.plugin!, params.method!, body(b).payload)) ?? null,
    }));
  return api;
}
