import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { isMotusError, JsonHttpClient, MotusError, expectPeer, type ClientTls, type Logger } from '@motus/sdk';
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
import { privateDir } from '../kernel/private-files.js';
import { HostCredentials } from '../security/host-credentials.js';
import { SERVER_IDENTITY, ServerTlsManager } from '../security/server-tls.js';
import { ensureToken, writeClientFile } from './state-files.js';

export interface Running {
  url: string;
  stop(): Promise<void>;
}

/** JSON-lines logs into a file of the state folder. */
export function fileLogger(dir: string, file: string, fields: Record<string, unknown>): Logger {
  privateDir(dir);
  return new JsonLogger(createWriteStream(join(dir, file), { flags: 'a', mode: 0o600 }), logLevelFromEnv(), fields);
}

/** The host part of 'address:port'. */
function hostOf(listen: string): string {
  return listen.slice(0, listen.lastIndexOf(':')).replace(/^\[|\]$/g, '');
}

/**
 * The server role: inventory, orchestrator and the API over HTTPS, with tokens
 * and the site CA kept in `stateDir` (owner-only). The CA bundle clients trust is
 * written to `stateDir/ca.pem` and into `client.json`.
 */
export async function runServer(site: SiteConfig, stateDir: string, logger: Logger): Promise<Running & { server: MotusServer; agentToken: string; tls: ServerTlsManager }> {
  privateDir(stateDir);
  const apiToken = ensureToken(stateDir, 'api-token');
  const agentToken = ensureToken(stateDir, 'agent-token');
  const tls = await ServerTlsManager.start(stateDir, site.site, hostOf(site.server.listen), logger);
  const hostNames = (name: string) => {
    const host = site.hosts.find((h) => h.name === name);
    return host ? [hostOf(host.listen), host.migrationAddress] : undefined;
  };
  tls.hostNames = (name) => hostNames(name) ?? [];
  const server = await MotusServer.start({
    stateDir,
    logger,
    container: createRootContainer(),
    migration: site.migration,
    plugins: site.plugins,
    limits: site,
    placement: site.placement,
    metrics: new MetricsRegistry().withProcessDefaults(),
    reconnect: (name, url) => new HttpHostLink({ name, url, token: agentToken, ...(url.startsWith('https:') ? { tls: tls.agentClientTls } : {}) }),
  });
  const api = createServerApi(server, { apiToken, agentToken, logger, tls, hostNames, authFailureLimits: site.server.authFailures });
  let url: string;
  try {
    url = await api.listen(site.server.listen);
  } catch (err) {
    await server.stop();
    throw new MotusError('MOTUS_E_INVALID_REQUEST', `the server cannot listen on ${site.server.listen}: ${(err as Error).message}`);
  }
  writeClientFile(stateDir, { url, token: apiToken, ca: tls.bundle });
  tls.onChange(() => writeClientFile(stateDir, { url, token: apiToken, ca: tls.bundle }));
  logger.info('server listening', { url, ca: tls.ca.info().fingerprint256 });
  return {
    url,
    server,
    agentToken,
    tls,
    stop: async () => {
      await api.close();
      await server.stop();
    },
  };
}

/**
 * The agent role: one host's VMs, its API, and registration with the server.
 * With an https server URL it first enrolls: it makes its key, sends a request
 * for a certificate (agent token), and then serves the agent protocol over HTTPS,
 * taking orders only from the server's certificate. `serverCa` is the CA bundle
 * it trusts the server with until enrolment gives it the site's.
 */
export async function runAgent(
  site: SiteConfig,
  host: HostConfig,
  stateDir: string,
  serverUrl: string,
  agentToken: string,
  logger: Logger,
  serverCa?: string,
): Promise<Running> {
  privateDir(stateDir);
  let credentials: HostCredentials | undefined;
  if (serverUrl.startsWith('https:')) {
    if (!serverCa) throw new MotusError('MOTUS_E_TLS', `the server at ${serverUrl} speaks HTTPS: give the agent the site CA (--ca FILE, the ca.pem in the server's state folder)`);
    credentials = new HostCredentials(stateDir, host.name, host.migrationTls);
    const csr = await credentials.request();
    const enrolled = (await callServer(serverUrl, '/v1/agents/enroll', { name: host.name, csr }, agentToken, { ca: serverCa, checkPeer: expectPeer(SERVER_IDENTITY, 'server') }, logger)) as {
      cert: string;
      ca: string;
    };
    credentials.install(enrolled.cert, enrolled.ca);
    logger.info('host certificate received', { host: host.name });
  }
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
    ...(credentials ? { migrationCredentials: () => credentials.migrationCredentials() } : {}),
  });
  let api: JsonHttpServer | undefined;
  try {
    api = createAgentApi(agent, agentToken, logger, { ...(credentials ? { credentials } : {}), authFailureLimits: site.server.authFailures });
    const url = await api.listen(host.listen);
    const mine = credentials?.serverTls;
    await callServer(serverUrl, '/v1/agents/register', { name: host.name, url }, agentToken, mine ? { ...mine, checkPeer: expectPeer(SERVER_IDENTITY, 'server') } : undefined, logger);
    logger.info('registered with server', { server: serverUrl, url });
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

/** An agent's call to its server (enrolment, registration), retried until the server answers or 60 s pass. */
async function callServer(serverUrl: string, path: string, body: unknown, token: string, tls: ClientTls | undefined, logger: Logger): Promise<unknown> {
  const server = new JsonHttpClient({
    url: serverUrl,
    token,
    timeoutMs: 15_000,
    peer: 'the Motus server',
    badAnswerCode: 'MOTUS_E_AGENT_UNREACHABLE',
    ...(tls ? { tls } : {}),
  });
  const deadline = Date.now() + 60_000;
  let lastError = '';
  try {
    while (Date.now() < deadline) {
      try {
        return await server.call('POST', path, body);
      } catch (err) {
        lastError = (err as Error).message;
        // A refused token, a bad body, an unknown host or an untrusted server will not get better by asking again.
        if (['MOTUS_E_UNAUTHORIZED', 'MOTUS_E_INVALID_REQUEST', 'MOTUS_E_HOST_NOT_FOUND', 'MOTUS_E_TLS'].some((code) => isMotusError(err, code as never))) {
          logger.error('the server refused the agent', { path, error: lastError });
          throw err;
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  } finally {
    server.close();
  }
  logger.error('the server did not answer', { path, error: lastError });
  throw new MotusError('MOTUS_E_AGENT_UNREACHABLE', `the agent could not call ${path} on the server at ${serverUrl}: ${lastError}`, { server: serverUrl });
}
