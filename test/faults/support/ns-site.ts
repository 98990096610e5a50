/**
 * A site whose server (and storage) live in the root namespace and whose two agents
 * each run as `motusd agent` inside their host's namespace (test/faults/support/
 * netns.ts), so a fault test can kill any of them with SIGKILL, start it again, and
 * cut the links between them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, cpSync, existsSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MotusClient } from '@motus/sdk';
import { freePort, repoRoot, tempDir, waitFor } from '../../support/index.js';
import { BRIDGE_ADDRESS, type Fabric } from './netns.js';

const motusd = join(repoRoot, 'core', 'dist', 'bin', 'motusd.js');

export interface NsSite {
  client(): MotusClient;
  stateDir: string;
  serverPid(): number | undefined;
  agentPid(host: string): number | undefined;
  killServer(): Promise<void>;
  startServer(): Promise<void>;
  killAgent(host: string): Promise<void>;
  startAgent(host: string): Promise<void>;
  /** Waits until every agent is registered and answers. */
  ready(): Promise<void>;
  stop(): Promise<void>;
}

/** `plugins` is the YAML of the site's `plugins:` items. */
export async function startNsSite(fabric: Fabric, plugins: string, migration: string): Promise<NsSite> {
  const dir = tempDir('faults');
  const port = await freePort();
  const sitePath = join(dir.path, 'site.yaml');
  writeFileSync(
    sitePath,
    `site: faults
server:
  listen: '${BRIDGE_ADDRESS}:${port}'
migration:
${migration}
hosts:
${fabric.hosts.map((h) => `  - name: ${h.name}\n    listen: '${h.address}:${7400}'\n    migrationAddress: '${h.migrationAddress}'\n    memoryMiB: 1024`).join('\n')}
plugins:
${plugins}
# No balancing or evacuation moves the fault test's VM behind its back (a loaded
# machine looks overloaded to the health signals).
placement:
  clusters:
    - name: faults
      hosts: [${fabric.hosts.map((h) => h.name).join(', ')}]
      balancing:
        mode: manual
  health:
    onDegraded: report
`,
  );
  const serverDir = join(dir.path, 'server');
  let server: ChildProcess | undefined;
  const agents = new Map<string, ChildProcess>();
  let client: MotusClient | undefined;

  const spawnLogged = (cmd: string, args: string[], log: string): ChildProcess => {
    const fd = openSync(join(dir.path, log), 'a');
    const child = spawn(cmd, args, { stdio: ['ignore', fd, fd], env: { ...process.env, MOTUS_LOG_LEVEL: process.env.MOTUS_LOG_LEVEL ?? 'warn' } });
    closeSync(fd);
    return child;
  };
  const kill9 = async (child: ChildProcess | undefined) => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await exited;
  };
  const startServer = async () => {
    rmSync(join(serverDir, 'client.json'), { force: true });
    const child = spawnLogged(process.execPath, [motusd, 'server', '--state', serverDir, '--site', sitePath], 'server.out');
    server = child;
    const file = await waitFor('the server to write client.json', () => {
      if (child.exitCode !== null) throw new Error(`motusd server exited: ${readFileSync(join(dir.path, 'server.out'), 'utf8')}`);
      return existsSync(join(serverDir, 'client.json')) ? (JSON.parse(readFileSync(join(serverDir, 'client.json'), 'utf8')) as { url: string; token: string; ca: string }) : undefined;
    }, 60_000, 100);
    client = new MotusClient(file);
  };
  const startAgent = async (host: string) => {
    const h = fabric.hosts.find((x) => x.name === host)!;
    const state = join(dir.path, 'agents', host);
    const out = join(dir.path, `${host}.out`);
    const listening = () => (existsSync(out) ? readFileSync(out, 'utf8').split(`Motus agent ${host} listening`).length - 1 : 0);
    const before = listening();
    const child = spawnLogged('ip', ['netns', 'exec', h.ns, process.execPath, motusd, 'agent', '--name', host, '--state', state, '--site', sitePath, '--server', `https://${BRIDGE_ADDRESS}:${port}`, '--agent-token-file', join(serverDir, 'agent-token'), '--ca', join(serverDir, 'ca.pem')], `${host}.out`);
    agents.set(host, child);
    // Until this agent has registered, the server may still take the killed one for alive.
    await waitFor(`agent ${host} to start`, () => {
      if (child.exitCode !== null) throw new Error(`agent ${host} exited: ${readFileSync(out, 'utf8').slice(-2000)}`);
      return listening() > before ? true : undefined;
    }, 180_000, 200);
  };
  const ready = async () => {
    await waitFor('both agents to be connected', async () => {
      const hosts = await client!.hosts().catch(() => []);
      // 'degraded' is a health verdict (a loaded machine); the agent answers.
      return hosts.length === fabric.hosts.length && hosts.every((h) => h.state === 'connected' || h.state === 'degraded') ? true : undefined;
    }, 90_000, 250);
  };
  const stop = async () => {
    await Promise.all([...agents.values()].map(async (child) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    }));
    await kill9(server);
    // FAULT_LOGS=<folder> keeps the processes' output and logs for a post-mortem.
    if (process.env.FAULT_LOGS) cpSync(dir.path, process.env.FAULT_LOGS, { recursive: true, filter: (src) => !src.includes('/vms/') || src.endsWith('.log') });
    dir.remove();
  };
  try {
    await startServer();
    await Promise.all(fabric.hosts.map((h) => startAgent(h.name)));
    await ready();
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    client: () => client!,
    stateDir: dir.path,
    serverPid: () => server?.pid,
    agentPid: (host) => agents.get(host)?.pid,
    killServer: () => kill9(server),
    startServer,
    killAgent: (host) => kill9(agents.get(host)),
    startAgent,
    ready,
    stop,
  };
}
