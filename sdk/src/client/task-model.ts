/** Types of the task, schedule, audit and identity routes of the server API. */
import type { MotusErrorJSON } from '../errors.js';
import type { Priority } from '../model.js';

export type Role = 'viewer' | 'operator' | 'admin';

export type TaskState = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';

/** One requested migration, from the queue to its end. Its id is also its migration's id. */
export interface TaskInfo {
  id: string;
  vm: string;
  destination: string;
  priority: Priority;
  requestedBy: string;
  state: TaskState;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  /** The schedule that made it, if any. */
  scheduleId?: string;
  /** Why it waits (the limit that is full), while queued. */
  waitingFor?: string;
  error?: MotusErrorJSON;
  /** The request id of the API call (or schedule run) that made it; its log lines, server's and agents', carry it. */
  requestId?: string;
}

export interface TaskRequest {
  vm: string;
  destination: string;
  priority?: Priority;
}

/** The VMs a schedule moves: named ones, or every VM whose name matches a glob (`web-*`) when it runs. */
/** Named VMs, every VM whose name matches a glob, or every VM with a tag (VmSpec.tags), when the schedule runs. */
export type ScheduleTarget = { vms: string[] } | { pattern: string } | { tag: string };

export interface ScheduleInfo {
  id: string;
  owner: string;
  target: ScheduleTarget;
  destination: string;
  priority: Priority;
  /** One-shot time (ISO, UTC) … */
  at?: string;
  /** … or a 5-field cron expression, evaluated in UTC. */
  cron?: string;
  enabled: boolean;
  createdAt: string;
  nextRunAt?: string;
  lastRunAt?: string;
  /** What the last run did: the tasks it queued, or why it was refused. */
  lastOutcome?: string;
}

export interface ScheduleRequest {
  target: ScheduleTarget;
  destination: string;
  priority?: Priority;
  at?: string;
  cron?: string;
  enabled?: boolean;
}

export interface AuditRecord {
  seq: number;
  at: string;
  user: string;
  action: string;
  outcome: string;
  vm?: string;
  source?: string;
  destination?: string;
  task?: string;
  downtimeMs?: number;
  detail?: Record<string, unknown>;
  prevHash: string;
  hash: string;
}

export interface AuditQuery {
  vm?: string;
  user?: string;
  host?: string;
  since?: string;
  until?: string;
  limit?: number;
}

export interface AuditVerification {
  ok: true;
  records: number;
  headHash: string;
}

export interface UserInfo {
  name: string;
  role: Role;
  createdAt: string;
  createdBy: string;
}

export interface TokenInfo {
  id: string;
  user: string;
  label: string;
  createdAt: string;
  revokedAt?: string;
}

/** A new token: the secret is shown once and stored only as a hash. */
export interface NewToken extends TokenInfo {
  token: string;
}
