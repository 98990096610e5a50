import { MotusError, readJsonLines, type MigrationProgress, type MigrationTuning, type MotusErrorJSON, type VmRunState, type VmSpec } from '@motus/sdk';
import type { AgentFacts, AgentVm, HostLink } from './host-link.js';

export interface HttpHostLinkOptions {
  name: string;
  url: string;
  token: string;
  timeoutMs?: number;
}

/** The server's link to an agent in another process, over the agent protocol. */
export class HttpHostLink implements HostLink {
  readonly name: string;
  private readonly base: string;
  private readonly timeoutMs: number;

  constructor(private readonly options: HttpHostLinkOptions) {
    this.name = options.name;
    this.base = options.url.replace(/\/+$/, '');
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  get url(): string {
    return this.base;
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
  prepareIncoming(spec: VmSpec, migrationId: string): Promise<{ uri: string }> {
    return this.call('POST', this.vmPath(spec.name, 'incoming'), { spec, migrationId }, 60_000);
  }

  async *migrateOut(name: string, uri: string, tuning: MigrationTuning, migrationId: string, signal: AbortSignal): AsyncGenerator<MigrationProgress> {
    let response: Response;
    try {
      response = await fetch(this.base + this.vmPath(name, 'migrate'), {
        method: 'POST',
        headers: this.headers(),
        body: JSON.stringify({ uri, tuning, migrationId }),
        signal,
      });
    } catch (err) {
      throw this.unreachable(err);
    }
    if (!response.ok || !response.body) throw await this.errorOf(response);
    try {
      for await (const line of readJsonLines(response.body as unknown as AsyncIterable<Uint8Array>)) {
        const item = line as { progress?: MigrationProgress; error?: MotusErrorJSON };
        if (item.error) throw MotusError.fromJSON(item.error);
        if (item.progress) yield item.progress;
      }
    } catch (err) {
      if (err instanceof MotusError) throw err;
      throw this.unreachable(err);
    }
  }

  async continueMigration(name: string): Promise<void> {
    await this.call('POST', this.vmPath(name, 'continue'), {});
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
  async pluginCall(plugin: string, method: string, payload: unknown): Promise<unknown> {
    const { result } = await this.call<{ result: unknown }>('POST', `/v1/plugins/${encodeURIComponent(plugin)}/${encodeURIComponent(method)}`, { payload });
    return result;
  }

  private vmPath(name: string, verb: string): string {
    return `/v1/vms/${encodeURIComponent(name)}/${verb}`;
  }

  private headers(): Record<string, string> {
    return { authorization: `Bearer ${this.options.token}`, 'content-type': 'application/json' };
  }

  private async call<T>(method: string, path: string, body?: unknown, timeoutMs = this.timeoutMs): Promise<T> {
    let response: Response;
    try {
      response = await fetch(this.base + path, {
        method,
        headers: this.headers(),
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      throw this.unreachable(err);
    }
    if (!response.ok) throw await this.errorOf(response);
    const text = await response.text();
    try {
      return (text.length > 0 ? JSON.parse(text) : undefined) as T;
    } catch {
      throw new MotusError('MOTUS_E_AGENT_UNREACHABLE', `agent of host ${this.name} sent a body that is not JSON`, { host: this.name });
    }
  }

  private async errorOf(response: Response): Promise<MotusError> {
    const text = await response.text().catch(() => '');
    try {
      const json = JSON.parse(text) as { error?: MotusErrorJSON };
      if (json.error?.code) return MotusError.fromJSON(json.error);
    } catch {
      /* not JSON: described below */
    }
    return new MotusError('MOTUS_E_AGENT_UNREACHABLE', `agent of host ${this.name} answered HTTP ${response.status}`, { host: this.name, status: response.status });
  }

  private unreachable(err: unknown): MotusError {
    const cause = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
    return new MotusError('MOTUS_E_AGENT_UNREACHABLE', `cannot reach the agent of host ${this.name} at ${this.base}: ${cause}`, { host: this.name, url: this.base }, { cause: err });
  }
}
