import { MotusError, type MotusErrorJSON } from '../errors.js';
import type { HostEvent, MigrationEvent, VmEvent } from '../events.js';
import type { HostInfo, MigrationRequest, MigrationSummary, VmInfo, VmSpec } from '../model.js';
import { readJsonLines } from './ndjson.js';
import type {
  AuditQuery,
  AuditRecord,
  AuditVerification,
  NewToken,
  Role,
  ScheduleInfo,
  ScheduleRequest,
  TaskInfo,
  TaskRequest,
  TokenInfo,
  UserInfo,
} from './task-model.js';

export interface MotusClientOptions {
  /** Server URL, e.g. http://127.0.0.1:7300 */
  url: string;
  token: string;
  /** Per-request timeout for non-streaming calls. */
  timeoutMs?: number;
}

export type SiteEvent = ({ stream: 'migration' } & MigrationEvent) | ({ stream: 'host' } & HostEvent) | ({ stream: 'vm' } & VmEvent);

/** Typed client of the motusd server API (REST + NDJSON event streams). */
export class MotusClient {
  private readonly base: string;
  private readonly timeoutMs: number;

  constructor(private readonly options: MotusClientOptions) {
    this.base = options.url.replace(/\/+$/, '');
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  hosts(): Promise<HostInfo[]> {
    return this.call('GET', '/v1/hosts');
  }

  vms(): Promise<VmInfo[]> {
    return this.call('GET', '/v1/vms');
  }

  startVm(spec: VmSpec, host: string): Promise<VmInfo> {
    return this.call('POST', '/v1/vms', { spec, host });
  }

  async stopVm(name: string): Promise<void> {
    await this.call('POST', `/v1/vms/${encodeURIComponent(name)}/stop`, {});
  }

  /**
   * Requests a migration; it becomes a task. The answer (202) is the migration's
   * summary: `running` when it started at once, `queued` while it waits for room
   * under the concurrency limits. Rejects with the coded error when it is refused
   * (and, when it could start at once, when its validation refused it).
   */
  migrate(request: MigrationRequest): Promise<MigrationSummary> {
    return this.call('POST', '/v1/migrations', request);
  }

  whoami(): Promise<{ user: string; role: Role; tokenId: string }> {
    return this.call('GET', '/v1/whoami');
  }

  tasks(): Promise<TaskInfo[]> {
    return this.call('GET', '/v1/tasks');
  }

  task(id: string): Promise<TaskInfo> {
    return this.call('GET', `/v1/tasks/${encodeURIComponent(id)}`);
  }

  submitTask(request: TaskRequest): Promise<TaskInfo> {
    return this.call('POST', '/v1/tasks', request);
  }

  /** Cancels a queued task (it never starts) or a running one (it rolls back to the source). */
  cancelTask(id: string): Promise<TaskInfo> {
    return this.call('POST', `/v1/tasks/${encodeURIComponent(id)}/cancel`, {});
  }

  schedules(): Promise<ScheduleInfo[]> {
    return this.call('GET', '/v1/schedules');
  }

  schedule(id: string): Promise<ScheduleInfo> {
    return this.call('GET', `/v1/schedules/${encodeURIComponent(id)}`);
  }

  createSchedule(request: ScheduleRequest): Promise<ScheduleInfo> {
    return this.call('POST', '/v1/schedules', request);
  }

  updateSchedule(id: string, patch: Partial<ScheduleRequest>): Promise<ScheduleInfo> {
    return this.call('PATCH', `/v1/schedules/${encodeURIComponent(id)}`, patch);
  }

  async deleteSchedule(id: string): Promise<void> {
    await this.call('DELETE', `/v1/schedules/${encodeURIComponent(id)}`, {});
  }

  audit(query: AuditQuery = {}): Promise<AuditRecord[]> {
    return this.call('GET', `/v1/audit${queryString(query)}`);
  }

  /** The audit trail as JSON Lines or CSV text. */
  auditExport(query: AuditQuery, format: 'jsonl' | 'csv'): Promise<string> {
    return this.call('GET', `/v1/audit${queryString({ ...query, format })}`, undefined, 'text');
  }

  /** Resolves when the whole chain verifies; rejects with MOTUS_E_AUDIT_TAMPERED naming the first bad record. */
  verifyAudit(): Promise<AuditVerification> {
    return this.call('GET', '/v1/audit/verify');
  }

  users(): Promise<UserInfo[]> {
    return this.call('GET', '/v1/users');
  }

  addUser(name: string, role: Role): Promise<UserInfo> {
    return this.call('POST', '/v1/users', { name, role });
  }

  async removeUser(name: string): Promise<void> {
    await this.call('DELETE', `/v1/users/${encodeURIComponent(name)}`, {});
  }

  tokens(user?: string): Promise<TokenInfo[]> {
    return this.call('GET', `/v1/tokens${user ? queryString({ user }) : ''}`);
  }

  createToken(user: string, label?: string): Promise<NewToken> {
    return this.call('POST', '/v1/tokens', { user, ...(label ? { label } : {}) });
  }

  revokeToken(id: string): Promise<TokenInfo> {
    return this.call('POST', `/v1/tokens/${encodeURIComponent(id)}/revoke`, {});
  }

  migrations(): Promise<MigrationSummary[]> {
    return this.call('GET', '/v1/migrations');
  }

  migration(id: string): Promise<MigrationSummary> {
    return this.call('GET', `/v1/migrations/${encodeURIComponent(id)}`);
  }

  async cancelMigration(id: string): Promise<void> {
    await this.call('POST', `/v1/migrations/${encodeURIComponent(id)}/cancel`, {});
  }

  /** The migration's events from the first, following it until it ends. */
  migrationEvents(id: string, signal?: AbortSignal): AsyncGenerator<MigrationEvent> {
    return this.stream<MigrationEvent>(`/v1/migrations/${encodeURIComponent(id)}/events`, signal);
  }

  /** Every event of the site from now on (hosts, VMs, migrations), until aborted. */
  events(signal?: AbortSignal): AsyncGenerator<SiteEvent> {
    return this.stream<SiteEvent>('/v1/events', signal);
  }

  private headers(): Record<string, string> {
    return { authorization: `Bearer ${this.options.token}`, 'content-type': 'application/json' };
  }

  private async call<T>(method: string, path: string, body?: unknown, as: 'json' | 'text' = 'json'): Promise<T> {
    let response: Response;
    try {
      response = await fetch(this.base + path, {
        method,
        headers: this.headers(),
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw unreachable(this.base, err);
    }
    const text = await response.text();
    if (as === 'text' && response.ok) return text as T;
    let json: unknown;
    try {
      json = text.length > 0 ? JSON.parse(text) : undefined;
    } catch {
      throw new MotusError('MOTUS_E_INTERNAL', `server answered ${response.status} with a body that is not JSON`, { status: response.status });
    }
    if (!response.ok) throw errorFromBody(response.status, json);
    return json as T;
  }

  private async *stream<T>(path: string, signal?: AbortSignal): AsyncGenerator<T> {
    let response: Response;
    try {
      response = await fetch(this.base + path, { headers: this.headers(), signal });
    } catch (err) {
      if (signal?.aborted) return;
      throw unreachable(this.base, err);
    }
    if (!response.ok || !response.body) {
      const text = await response.text();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      throw errorFromBody(response.status, json);
    }
    try {
      for await (const item of readJsonLines(response.body as unknown as AsyncIterable<Uint8Array>)) yield item as T;
    } catch (err) {
      if (signal?.aborted) return;
      throw unreachable(this.base, err);
    }
  }
}

function queryString(query: object): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query) as Array<[string, unknown]>) if (value !== undefined) params.set(key, String(value));
  const text = params.toString();
  return text ? `?${text}` : '';
}

function unreachable(base: string, err: unknown): MotusError {
  const cause = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
  return new MotusError('MOTUS_E_AGENT_UNREACHABLE', `cannot reach the Motus server at ${base}: ${cause}`, { url: base }, { cause: err });
}

function errorFromBody(status: number, json: unknown): MotusError {
  const error = (json as { error?: MotusErrorJSON } | undefined)?.error;
  if (error && typeof error.code === 'string') return MotusError.fromJSON(error);
  return new MotusError('MOTUS_E_INTERNAL', `server answered HTTP ${status}`, { status });
}
