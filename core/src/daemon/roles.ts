import { createWriteStream, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { isMotusError, JsonHttpClient, MotusError, type Logger } from '@motus/sdk';
import { createAgentApi } from '../agent/agent-api.js';
import { HttpHostLink } from '../agent/http-host-link.js';
import { HostAgent } from '../agent/host-agent.js';
import { createRootContainer } from '../kernel/container.js';
import { JsonLogger, logLevelFromEnv } from '../kernel/logger.js';
import { MetricsRegistry } from '../metrics/metrics-registry.js';
import type { JsonHttpServer } from '../http/http-server.js';
import { MotusServer } from '../server/motus-server.js';
import { createServerApi } from '../server/server-api.js';
import type { HostConfig, SiteConfig } from '../site/site-schema.js';
import { ensureToken, writeClientFile } from './state-files.js';

export interface Running {
  url: string;
  stop(): Promise<void>;
}

/** JSON-lines logs into a file of the state folder. */
export function fileLogger(dir: string, file: string, fields: Record<string, unknown>): Logger {
  mkdirSync(dir, { recursive: true });
  return new JsonLogger(createWriteStream(join(dir, file), { flags: 'a' }), logLevelFromEnv(), fields);
}

/** The server role: inventory, orchestrator and the API, with tokens kept in `stateDir`. */
export async function runServer(site: SiteConfig, stateDir: string, logger: Logger): Promise<Running & { server: MotusServer; agentToken: string }> {
  const apiToken = ensureToken(stateDir, 'api-token');
  const agentToken = ensureToken(stateDir, 'agent-token');
  const server = await MotusServer.start({
    stateDir,
    logger,
    container: createRootContainer(),
    migration: site.migration,
    plugins: site.plugins,
    limits: site,
    placement: site.placement,
    reconnect: (name, url) => new HttpHostLink({ name, url, token: agentToken }),
    metrics: new MetricsRegistry().withProcessDefaults(),
  });
  const api = createServerApi(server, { apiToken, agentToken, logger });
  let url: string;
  try {
    url = await api.listen(site.server.listen);
  } catch (err) {
    await server.stop();
    throw new MotusError('MOTUS_E_INVALID_REQUEST', `the server cannot listen on ${site.server.listen}: ${(err as Error).message}`);
  }
  writeClientFile(stateDir, { url, token: apiToken });
  logger.info('server listening', { url });
  return {
    url,
    server,
    agentToken,
    stop: async () => {
      await api.close();
      await server.stop();
    },
  };
}

/** The agent role: one host's VMs, its API, and registration with the server (retried until it answers). */
export async function runAgent(
  site: SiteConfig,
  host: HostConfig,
  stateDir: string,
  serverUrl: string,
  agentToken: string,
  logger: Logger,
): Promise<Running> {
  const agent = await HostAgent.start({
    name: host.name,
    stateDir,
    migrationAddress: host.migrationAddress,
    switchoverWaitMs: site.migration.switchoverWaitSeconds * 1000,
    ...(host.memoryMiB === undefined ? {} : { memoryMiB: host.memoryMiB }),
    sysRoot: host.sysRoot,
    metricsIntervalMs: site.placement.metricsIntervalSeconds * 1000,
    plugins: site.plugins,
    logger,
    container: createRootContainer(),
    metrics: new MetricsRegistry().withProcessDefaults(),
  });
  let api: JsonHttpServer | undefined;
  try {
    api = createAgentApi(agent, agentToken, logger);
    const url = await api.listen(host.listen);
    await register(serverUrl, agentToken, host.name, url, logger);
    return {
      url,
      stop: async () => {
        await api?.close();
        await agent.stop();
      },
    };
  } catch (err) {
    await api?.close();
    await agent.stop();
    throw err;
  }
}

async function register(serverUrl: string, token: string, name: string, url: string, logger: Logger): Promise<void> {
  const server = new JsonHttpClient({ url: serverUrl, token, timeoutMs: 15_000, peer: 'the Motus server', badAnswerCode: 'MOTUS_E_AGENT_UNREACHABLE' });
  const deadline = Date.now() + 60_000;
  let lastError = '';
  while (Date.now() < deadline) {
    try {
      await server.call('POST', '/v1/agents/register', { name, url });
      logger.info('registered with server', { server: serverUrl, url });
      return;
    } catch (err) {
      lastError = (err as Error).message;
      // A refused token or a bad body will not get better by asking again.
      if (isMotusError(err, 'MOTUS_E_UNAUTHORIZED') || isMotusError(err, 'MOTUS_E_INVALID_REQUEST')) break;
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  throw new MotusError('MOTUS_E_AGENT_UNREACHABLE', `agent ${name} could not register with the server at ${serverUrl}: ${lastError}`, { server: serverUrl });
}
