import { JsonHttpClient, MotusError, expectPeer, type MigrationProgress, type MigrationTuning, type MotusErrorJSON, type VmRunState, type VmSpec } from '@motus/sdk';
import { currentRequestId, REQUEST_ID_HEADER } from '../kernel/request-context.js';
import type { AgentFacts, AgentVm, HostLink, IncomingOptions, OutgoingOptions } from './host-link.js';
import type { LinkProbeOptions, LinkProbeResult, LinkProbeSink } from './link-probe.js';

/** The server's TLS material for talking to agents; `generation` changes when the CA rotates. */
export interface AgentClientTls {
  generation: number;
  ca: string;
  cert: string;
  key: string;
}

export interface HttpHostLinkOptions {
  name: string;
  url: string;
  token: string;
  timeoutMs?: number;
  /** A migration progress stream silent this long is taken as lost (default 20 s). */
  streamIdleMs?: number;
  /** For https agent URLs: the site CA and the server's client certificate, read at each call (rotation). */
  tls?: () => AgentClientTls;
}

/** The server's link to an agent in another process, over the agent protocol. */
export class HttpHostLink implements HostLink {
  readonly name: string;
  private readonly http: JsonHttpClient;
  private readonly streamIdleMs: number;

  constructor(options: HttpHostLinkOptions) {
    this.name = options.name;
    this.streamIdleMs = options.streamIdleMs ?? 20_000;
    if (options.url.startsWith('https:') && !options.tls) {
      throw new MotusError('MOTUS_E_TLS', `host ${options.name} listens on ${options.url} but the server has no site CA to check it with`, { host: options.name });
    }
    const tls = options.tls;
    // The agent's certificate must come from the site CA and name this host with
    // the host role, whatever address it listens on.
    const checkPeer = expectPeer(options.name, 'host');
    this.http = new JsonHttpClient({
      ...(tls
        ? {
            tls: () => {
              const { generation, ...material } = tls();
              return { generation, tls: { ...material, checkPeer } };
            },
          }
        : {}),
      url: options.url,
      token: options.token,
      timeoutMs: options.timeoutMs,
      peer: `the agent of host ${options.name}`,
      badAnswerCode: 'MOTUS_E_AGENT_UNREACHABLE',
      details: { host: options.name },
      // The request id being served goes along, so the agent's log lines carry it too.
      headers: (): Record<string, string> => {
        const requestId = currentRequestId();
        return requestId ? { [REQUEST_ID_HEADER]: requestId } : {};
      },
    });
  }

  get url(): string {
    return this.http.base;
  }

  facts(timeoutMs?: number): Promise<AgentFacts> {
    return this.call('GET', '/v1/facts', undefined, timeoutMs);
  }
  startVm(spec: VmSpec): Promise<AgentVm> {
    return this.call('POST', '/v1/vms', { spec });
  }
  async stopVm(name: string): Promise<void> {
    await this.call('POST', this.vmPath(name, 'stop'), {});
  }
  prepareIncoming(spec: VmSpec, migrationId: string, tuning?: MigrationTuning, options: IncomingOptions = {}): Promise<{ uri: string }> {
    return this.call('POST', this.vmPath(spec.name, 'incoming'), { spec, migrationId, ...(tuning ? { tuning } : {}), ...(options.tls ? { tls: true } : {}) }, 60_000);
  }

  /**
   * The agent sends a sample at least every few seconds (a keepalive while paused
   * at switchover), so a stream silent for `streamIdleMs` means a cut link or a
   * frozen agent: it ends with MOTUS_E_AGENT_UNREACHABLE instead of hanging.
   */
  async *migrateOut(name: string, uri: string, tuning: MigrationTuning, migrationId: string, signal: AbortSignal, options: OutgoingOptions = {}): AsyncGenerator<MigrationProgress> {
    const order = { uri, tuning, migrationId, ...(options.tls ? { tls: options.tls } : {}) };
    const idleMs = this.streamIdleMs;
    const idle = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => idle.abort(), idleMs);
    };
    const stalled = () => new MotusError('MOTUS_E_AGENT_UNREACHABLE', `the agent of host ${this.name} sent nothing about the migration of ${name} for ${idleMs} ms`, { host: this.name, url: this.url });
    arm();
    try {
      for await (const line of this.http.stream('POST', this.vmPath(name, 'migrate'), order, AbortSignal.any([signal, idle.signal]))) {
        const item = line as { progress?: MigrationProgress; error?: MotusErrorJSON };
        if (item.error) throw MotusError.fromJSON(item.error);
        if (item.progress) {
          // The consumer's own work between samples (a switchover) is not silence.
          clearTimeout(timer);
          yield item.progress;
        }
        arm();
      }
    } catch (err) {
      throw idle.signal.aborted && !signal.aborted ? stalled() : err;
    } finally {
      clearTimeout(timer);
    }
  }

  openLinkProbe(lifetimeMs: number): Promise<LinkProbeSink> {
    return this.call('POST', '/v1/link-probe/sink', { lifetimeMs });
  }
  probeLink(sink: LinkProbeSink, options: LinkProbeOptions): Promise<LinkProbeResult> {
    return this.call('POST', '/v1/link-probe', { sink, ...options }, options.timeoutMs + 5_000);
  }

  async continueMigration(name: string): Promise<void> {
    await this.call('POST', this.vmPath(name, 'continue'), {});
  }
  async tuneMigration(name: string, tuning: MigrationTuning): Promise<void> {
    await this.call('POST', this.vmPath(name, 'tune'), { tuning }, 10_000);
  }
  async firstHeartbeat(name: string, timeoutMs: number): Promise<number | null> {
    const { at } = await this.call<{ at: number | null }>('POST', this.vmPath(name, 'first-heartbeat'), { timeoutMs }, timeoutMs + 10_000);
    return at;
  }
  async startPostcopy(name: string): Promise<void> {
    await this.call('POST', this.vmPath(name, 'postcopy'), {}, 10_000);
  }
  async cancelMigration(name: string): Promise<void> {
    await this.call('POST', this.vmPath(name, 'cancel'), {});
  }
  async runState(name: string): Promise<VmRunState | 'absent'> {
    const { state } = await this.call<{ state: VmRunState | 'absent' }>('GET', this.vmPath(name, 'state'), undefined, 5_000);
    return state;
  }
  async resume(name: string): Promise<void> {
    await this.call('POST', this.vmPath(name, 'resume'), {});
  }
  async announce(name: string): Promise<void> {
    await this.call('POST', this.vmPath(name, 'announce'), {});
  }
  async commitIncoming(name: string): Promise<void> {
    await this.call('POST', this.vmPath(name, 'commit-incoming'), {});
  }
  async abortIncoming(name: string): Promise<void> {
    await this.call('POST', this.vmPath(name, 'abort-incoming'), {});
  }
  async finishOutgoing(name: string): Promise<void> {
    await this.call('POST', this.vmPath(name, 'finish-outgoing'), {});
  }
  async acquireStorage(name: string): Promise<void> {
    await this.call('POST', this.vmPath(name, 'acquire-storage'), {});
  }
  async releaseStorage(name: string): Promise<void> {
    await this.call('POST', this.vmPath(name, 'release-storage'), {});
  }
  /** Rotation: the agent trusts `ca` from now on and answers a certificate request for a new key. */
  async renewCredentials(ca: string): Promise<string> {
    const { csr } = await this.call<{ csr: string }>('POST', '/v1/credentials/renew', { ca });
    return csr;
  }

  /** Rotation: the agent answers with `cert` from now on. */
  async installCredentials(cert: string, ca: string): Promise<void> {
    await this.call('POST', '/v1/credentials/install', { cert, ca });
  }

  /** Drops kept connections (the host left the site). */
  close(): void {
    this.http.close();
  }

  async pluginCall(plugin: string, method: string, payload: unknown, timeoutMs?: number): Promise<unknown> {
    const { result } = await this.call<{ result: unknown }>('POST', `/v1/plugins/${encodeURIComponent(plugin)}/${encodeURIComponent(method)}`, { payload }, timeoutMs);
    return result;
  }

  private vmPath(name: string, verb: string): string {
    return `/v1/vms/${encodeURIComponent(name)}/${verb}`;
  }

  /** The agent's Prometheus exposition (text format). */
  metrics(): Promise<string> {
    return this.http.call<string>('GET', '/metrics', undefined, { as: 'text', timeoutMs: 10_000 });
  }

  private call<T>(method: string, path: string, body?: unknown, timeoutMs?: number): Promise<T> {
    return this.http.call<T>(method, path, body, { timeoutMs });
  }
}
