import type { AuditEvent, HostEvent, MigrationEvent, VmEvent } from '../events.js';
import type { HostInfo, MigrationRequest, MigrationSummary, VmInfo, VmSpec } from '../model.js';
import type { CaInfo, CaRotation } from './ca-model.js';
import { JsonHttpClient } from './json-http-client.js';
import type { HostNetworkStats, NetCaptureRequest, NetCaptureResult } from '../contracts/network.js';
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
import type { BalancePlan, ClusterInfo, EvacuationInfo, HostHealth, HostMetricsSample, InitialPlacement, Ranking } from './placement-model.js';

export interface MotusClientOptions {
  /** Server URL, e.g. https://127.0.0.1:7300 */
  url: string;
  token: string;
  /**
   * PEM bundle of the site CA (motusd writes it into client.json and ca.pem).
   * Without it an https URL is checked against the system's CAs, which do not
   * know a site's own CA.
   */
  ca?: string;
  /** Per-request timeout for non-streaming calls. */
  timeoutMs?: number;
}

export type SiteEvent = ({ stream: 'migration' } & MigrationEvent) | ({ stream: 'host' } & HostEvent) | ({ stream: 'vm' } & VmEvent) | ({ stream: 'audit' } & AuditEvent);

/** Typed client of the motusd server API (REST + NDJSON event streams). */
export class MotusClient {
  private readonly http: JsonHttpClient;

  constructor(options: MotusClientOptions) {
    const { ca, ...rest } = options;
    this.http = new JsonHttpClient({ ...rest, ...(ca ? { tls: { ca } } : {}), peer: 'the Motus server', badAnswerCode: 'MOTUS_E_INTERNAL' });
  }

  /** Closes idle connections to the server (a client kept for the life of a process need not). */
  close(): void {
    this.http.close();
  }

  /** The site CA (generation, fingerprint, validity). */
  ca(): Promise<CaInfo> {
    return this.call('GET', '/v1/ca');
  }

  /** A new site CA; every connected host gets a new certificate (admin). */
  rotateCa(): Promise<CaRotation> {
    return this.call('POST', '/v1/ca/rotate', {});
  }

  hosts(): Promise<HostInfo[]> {
    return this.call('GET', '/v1/hosts');
  }

  /** Every host's switch: ports with their counters, uplink, MAC table size. */
  netStats(): Promise<HostNetworkStats[]> {
    return this.call('GET', '/v1/net');
  }

  /** Captures a port, an uplink or a network for `durationMs`; answers one pcap file (base64). */
  netCapture(request: NetCaptureRequest): Promise<NetCaptureResult> {
    return this.call('POST', '/v1/net/capture', request, 'json', request.durationMs + 60_000);
  }

  vms(): Promise<VmInfo[]> {
    return this.call('GET', '/v1/vms');
  }

  /** Starts the VM on `host`; without one, initial placement picks it (partial and automatic clusters) and says why in `placement`. */
  startVm(spec: VmSpec, host?: string): Promise<VmInfo & { placement?: InitialPlacement }> {
    return this.call('POST', '/v1/vms', host === undefined ? { spec } : { spec, host });
  }

  /** Initial placement as a dry run: every host ranked for a VM not started yet. */
  recommendStart(spec: VmSpec): Promise<Ranking> {
    return this.call('POST', '/v1/vms/placement', { spec });
  }

  /** Replaces the VM's tags (what `{ tag }` schedules select by). */
  setVmTags(name: string, tags: string[]): Promise<VmInfo> {
    return this.call('PUT', `/v1/vms/${encodeURIComponent(name)}/tags`, { tags });
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

  /**
   * A method a plugin contributes on the server (PluginContext.handle), e.g.
   * `pluginCall('@motus/cpu-compat', 'check', { vm, to })`; resolves to its result.
   */
  async pluginCall<T = unknown>(plugin: string, method: string, payload: unknown = {}): Promise<T> {
    const { result } = await this.call<{ result: T }>('POST', `/v1/plugins/${encodeURIComponent(plugin)}/${encodeURIComponent(method)}`, { payload });
    return result;
  }

  /** The migration wizard: every host ranked as a destination of the VM, with reasons; refused hosts with theirs. */
  placement(vm: string): Promise<Ranking> {
    return this.call('GET', `/v1/vms/${encodeURIComponent(vm)}/placement`);
  }

  /** Migrates the VM to the wizard's best destination (a task); rejects with MOTUS_E_NO_DESTINATION when no host can take it. */
  relocate(vm: string, priority?: 'high' | 'normal'): Promise<{ ranking: Ranking; task: TaskInfo; migration: MigrationSummary }> {
    return this.call('POST', `/v1/vms/${encodeURIComponent(vm)}/relocate`, priority ? { priority } : {});
  }

  /** The host's CPU and memory use samples (placement's history), oldest first. */
  hostUsage(host: string): Promise<HostMetricsSample[]> {
    return this.call('GET', `/v1/hosts/${encodeURIComponent(host)}/usage`);
  }

  hostHealth(host: string): Promise<HostHealth> {
    return this.call('GET', `/v1/hosts/${encodeURIComponent(host)}/health`);
  }

  /** Starts emptying the host for maintenance (tasks under the limits); it enters maintenance once empty. */
  enterMaintenance(host: string, allowRunning = false): Promise<EvacuationInfo> {
    return this.call('POST', `/v1/hosts/${encodeURIComponent(host)}/maintenance`, allowRunning ? { allowRunning } : {});
  }

  exitMaintenance(host: string): Promise<HostInfo> {
    return this.call('DELETE', `/v1/hosts/${encodeURIComponent(host)}/maintenance`, {});
  }

  /** The host's latest evacuation (maintenance or degraded): its moves and how far it got. */
  evacuation(host: string): Promise<EvacuationInfo> {
    return this.call('GET', `/v1/hosts/${encodeURIComponent(host)}/maintenance`);
  }

  clusters(): Promise<ClusterInfo[]> {
    return this.call('GET', `/v1/clusters`);
  }

  configureCluster(cluster: string, change: { mode?: 'manual' | 'partial' | 'automatic'; threshold?: number; intervalSeconds?: number }): Promise<ClusterInfo> {
    return this.call('PATCH', `/v1/clusters/${encodeURIComponent(cluster)}`, change);
  }

  /** A balancing pass: proposals only (apply false), or proposals carried out as tasks. */
  balance(cluster: string, apply: boolean): Promise<BalancePlan> {
    return apply ? this.call('POST', `/v1/clusters/${encodeURIComponent(cluster)}/balance`, { apply: true }) : this.call('GET', `/v1/clusters/${encodeURIComponent(cluster)}/balance`);
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

  private call<T>(method: string, path: string, body?: unknown, as: 'json' | 'text' = 'json', timeoutMs?: number): Promise<T> {
    return this.http.call<T>(method, path, body, { as, ...(timeoutMs !== undefined ? { timeoutMs } : {}) });
  }

  /** Follows a stream until it ends; an abort by the caller ends it quietly. */
  private async *stream<T>(path: string, signal?: AbortSignal): AsyncGenerator<T> {
    try {
      for await (const item of this.http.stream('GET', path, undefined, signal)) yield item as T;
    } catch (err) {
      if (signal?.aborted) return;
      throw err;
    }
  }
}

function queryString(query: object): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query) as Array<[string, unknown]>) if (value !== undefined) params.set(key, String(value));
  const text = params.toString();
  return text ? `?${text}` : '';
}
