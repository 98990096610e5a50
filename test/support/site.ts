import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MotusClient } from '@motus/sdk';
import { tempDir, waitFor } from './system.js';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const motusd = join(repoRoot, 'core', 'dist', 'bin', 'motusd.js');
const motus = join(repoRoot, 'core', 'dist', 'bin', 'motus.js');

/** A real all-in-one site: motusd in its own process, one agent process per host. */
export interface TestSite {
  stateDir: string;
  client: MotusClient;
  /** Agent process ids by host name, from motusd's output. */
  agentPids: Map<string, number>;
  /** The motusd process (server role, parent of the agents). */
  serverPid: number;
  output(): string;
  /** Runs the real `motus` CLI against the site. */
  cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  stop(): Promise<void>;
}

/** `env`: variables for motusd and its agents on top of this process's (MOTUS_LOG_LEVEL, say). */
export async function startSite(siteYaml: string, env: Record<string, string> = {}): Promise<TestSite> {
  const dir = tempDir('site');
  const sitePath = join(dir.path, 'site.yaml');
  writeFileSync(sitePath, siteYaml);
  let out = '';
  const child: ChildProcess = spawn(process.execPath, [motusd, '--all-in-one', '--state', dir.path, '--site', sitePath], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    }
    dir.remove();
  };
  let client: MotusClient;
  try {
    await waitFor(
      'the all-in-one site to be ready',
      () => {
        if (child.exitCode !== null) throw new Error(`motusd exited with ${child.exitCode}:\n${out}`);
        return existsSync(join(dir.path, 'client.json')) ? true : undefined;
      },
      120_000,
    );
    // client.json carries the URL (https), the first admin's token and the site CA to trust.
    client = new MotusClient(JSON.parse(readFileSync(join(dir.path, 'client.json'), 'utf8')) as { url: string; token: string; ca: string });
  } catch (err) {
    // A site that cannot be used must not outlive the test: stop it whatever failed.
    await stop();
    throw err;
  }
  const agentPids = new Map([...out.matchAll(/started agent (\S+) \(pid (\d+)\)/g)].map((m) => [m[1]!, Number(m[2])]));
  return {
    stateDir: dir.path,
    client,
    agentPids,
    serverPid: child.pid!,
    output: () => out,
    cli: (...args) =>
      new Promise((resolve) => {
        execFile(process.execPath, [motus, '--state', dir.path, ...args], { timeout: 300_000 }, (err, stdout, stderr) => {
          const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
          resolve({ code, stdout, stderr });
        });
      }),
    stop,
  };
}

/** The head of a site file: host-a and host-b with 1 GiB each, and the per-migration bandwidth cap. */
export function twoHostSiteYaml(site: string, maxBandwidthMiBps: number): string {
  return `
site: ${site}
migration:
  maxBandwidthMiBps: ${maxBandwidthMiBps}
hosts:
  - name: host-a
    memoryMiB: 1024
  - name: host-b
    memoryMiB: 1024
`;
}

/** Each host's facts of one plugin, by host name (undefined where the plugin reports none). */
export async function pluginFactsByHost<T>(client: MotusClient, plugin: string): Promise<Map<string, T | undefined>> {
  return new Map((await client.hosts()).map((h) => [h.name, h.plugins[plugin] as T | undefined]));
}

/** QEMU processes whose command line names this VM (source and destination copies). */
export function qemuPidsOf(vm: string): Promise<number[]> {
  return new Promise((resolve, reject) => {
    execFile('ps', ['-eo', 'pid=,args='], (err, stdout) => {
      if (err) return reject(err);
      resolve(
        stdout
          .split('\n')
          .filter((line) => line.includes('qemu-system') && !line.includes('setpriv') && new RegExp(`-name (guest=)?${vm}(,|\\s|$)`).test(line))
          .map((line) => Number(line.trim().split(/\s+/)[0])),
      );
    });
  });
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
