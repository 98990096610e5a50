import type { AuditRecord, AuditVerification, HostInfo, MigrationEvent, MigrationSummary, Ranking, Role, SiteEvent, TaskInfo, VmInfo } from '@motus/sdk';

export interface Whoami {
  user: string;
  role: Role;
  tokenId: string;
}

/** A refusal from the server, with its code (MOTUS_E_FORBIDDEN …) and message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly data: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

/**
 * The page's client of the motusd API: JSON calls with the user's bearer token, and
 * the site's event stream read as JSON lines from a streamed fetch (EventSource
 * cannot send an Authorization header, and a token in a URL ends up in logs).
 */
export class ApiClient {
  constructor(private readonly token: string) {}

  whoami = () => this.call<Whoami>('GET', '/v1/whoami');
  hosts = () => this.call<HostInfo[]>('GET', '/v1/hosts');
  vms = () => this.call<VmInfo[]>('GET', '/v1/vms');
  migrations = () => this.call<MigrationSummary[]>('GET', '/v1/migrations');
  audit = (query: URLSearchParams) => this.call<AuditRecord[]>('GET', `/v1/audit?${query.toString()}`);
  verifyAudit = () => this.call<AuditVerification>('GET', '/v1/audit/verify');
  /** Every host ranked as the VM's destination by the server's placement engine, with reasons. */
  placement = (vm: string) => this.call<Ranking>('GET', `/v1/vms/${encodeURIComponent(vm)}/placement`);
  migrate = (body: { vm: string; destination: string; priority: string }) => this.call<MigrationSummary>('POST', '/v1/migrations', body);
  schedule = (body: Record<string, unknown>) => this.call<{ id: string }>('POST', '/v1/schedules', body);
  cancel = (id: string) => this.call<TaskInfo>('POST', `/v1/migrations/${encodeURIComponent(id)}/cancel`, {});

  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await fetch(path, {
      method,
      headers: { authorization: `Bearer ${this.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await response.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      throw new ApiError(response.status, 'MOTUS_E_INTERNAL', `the server answered HTTP ${response.status} with a body that is not JSON`);
    }
    if (!response.ok) {
      const error = (json as { error?: { code: string; message: string; data?: Record<string, unknown> } })?.error;
      throw new ApiError(response.status, error?.code ?? 'MOTUS_E_INTERNAL', error?.message ?? `HTTP ${response.status}`, error?.data);
    }
    return json as T;
  }

  /** The site's events, pushed by the server, until `signal` aborts or the server ends the stream. */
  siteEvents(signal: AbortSignal, onOpen: () => void): AsyncGenerator<SiteEvent> {
    return this.lines<SiteEvent>('/v1/events', signal, onOpen);
  }

  /** One migration's events from the first (a replay for a finished one). */
  migrationEvents(id: string, signal: AbortSignal): AsyncGenerator<MigrationEvent> {
    return this.lines<MigrationEvent>(`/v1/migrations/${encodeURIComponent(id)}/events`, signal);
  }

  private async *lines<T>(path: string, signal: AbortSignal, onOpen?: () => void): AsyncGenerator<T> {
    const response = await fetch(path, { headers: { authorization: `Bearer ${this.token}` }, signal });
    if (!response.ok || !response.body) throw new ApiError(response.status, 'MOTUS_E_INTERNAL', `event stream ${path} answered HTTP ${response.status}`);
    onOpen?.();
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let pending = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      pending += value;
      let newline: number;
      while ((newline = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, newline).trim();
        pending = pending.slice(newline + 1);
        if (!line) continue;
        try {
          yield JSON.parse(line) as T;
        } catch {
          // A line that is not JSON is skipped: one bad event must not stop the page.
        }
      }
    }
  }
}
