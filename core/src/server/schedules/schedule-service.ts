import { randomBytes } from 'node:crypto';
import { MotusError, type Logger, type ScheduleInfo, type ScheduleRequest, type ScheduleTarget, type VmInfo } from '@motus/sdk';
import { globToRegExp } from '../../kernel/glob.js';
import type { AuditTrail } from '../audit/audit-trail.js';
import type { IdentityStore } from '../identity/identity-store.js';
import { allows, type Principal } from '../identity/roles.js';
import type { TaskRequestInput } from '../tasks/task-service.js';
import { nextCronTime, parseCron } from './cron.js';
import type { ScheduleStore } from './schedule-store.js';

export interface ScheduleServiceDeps {
  store: ScheduleStore;
  audit: AuditTrail;
  identities: IdentityStore;
  logger: Logger;
  vms(): VmInfo[];
  knownHost(name: string): boolean;
  submit(request: TaskRequestInput): Promise<unknown>;
  /** A run missed while the server was down still happens at start if it is at most this late. */
  missedRunGraceSeconds: number;
}

/** Longest single wait of the timer: it re-reads the clock at least this often. */
const MAX_SLEEP_MS = 60_000;

/**
 * One-shot and cron schedules of migrations. A schedule runs with the identity of
 * its creator: the tasks it queues are theirs, and a run is refused (and audited)
 * when that user is gone or is no longer at least an operator.
 *
 * Missed runs: runs that fell due while the server was down are found at start;
 * a schedule whose last due time is at most `missedRunGraceSeconds` old runs once
 * (however many cron times it missed), an older one is recorded as missed; cron
 * schedules then go on from their next time.
 */
export class ScheduleService {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly deps: ScheduleServiceDeps) {}

  start(): void {
    const now = Date.now();
    for (const schedule of this.deps.store.all()) {
      if (!schedule.enabled || !schedule.nextRunAt || Date.parse(schedule.nextRunAt) > now) continue;
      const lateSeconds = (now - Date.parse(schedule.nextRunAt)) / 1000;
      if (lateSeconds <= this.deps.missedRunGraceSeconds) {
        void this.run(schedule, `late by ${Math.round(lateSeconds)} s (the server was down)`);
      } else {
        this.deps.audit.append({ user: schedule.owner, action: 'schedule.missed', outcome: `missed run of ${schedule.nextRunAt}`, destination: schedule.destination, detail: { schedule: schedule.id, lateSeconds: Math.round(lateSeconds) } });
        this.advance(schedule, 'missed while the server was down');
      }
    }
    this.arm();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  list(): ScheduleInfo[] {
    return this.deps.store.all();
  }

  get(id: string): ScheduleInfo {
    const schedule = this.deps.store.get(id);
    if (!schedule) throw new MotusError('MOTUS_E_NOT_FOUND', `no schedule ${id}`, { schedule: id });
    return schedule;
  }

  create(request: ScheduleRequest, by: Principal): ScheduleInfo {
    const when = this.when(request.at, request.cron);
    this.checkTarget(request.target);
    this.checkDestination(request.destination);
    const schedule: ScheduleInfo = {
      id: `s-${randomBytes(4).toString('hex')}`,
      owner: by.user,
      target: request.target,
      destination: request.destination,
      priority: request.priority ?? 'normal',
      ...when,
      enabled: request.enabled ?? true,
      createdAt: new Date().toISOString(),
    };
    this.deps.store.put(schedule);
    this.deps.audit.append({ user: by.user, action: 'schedule.create', outcome: 'created', destination: schedule.destination, ...vmOf(schedule.target), detail: describe(schedule) });
    this.arm();
    return schedule;
  }

  update(id: string, patch: Partial<ScheduleRequest>, by: Principal): ScheduleInfo {
    const current = this.get(id);
    this.mayChange(current, by);
    const timing = patch.at !== undefined || patch.cron !== undefined ? this.when(patch.at, patch.cron) : undefined;
    if (patch.target) this.checkTarget(patch.target);
    if (patch.destination) this.checkDestination(patch.destination);
    const next: ScheduleInfo = {
      ...current,
      ...(patch.target ? { target: patch.target } : {}),
      ...(patch.destination ? { destination: patch.destination } : {}),
      ...(patch.priority ? { priority: patch.priority } : {}),
      ...(patch.enabled === undefined ? {} : { enabled: patch.enabled }),
    };
    if (timing) {
      delete next.at;
      delete next.cron;
      Object.assign(next, timing);
    } else if (patch.enabled === true && current.cron) {
      next.nextRunAt = nextCronTime(parseCron(current.cron), new Date())!.toISOString();
    } else if (patch.enabled === true && current.at && Date.parse(current.at) <= Date.now()) {
      throw new MotusError('MOTUS_E_INVALID_REQUEST', `at: ${current.at} is in the past; give a new time to enable schedule ${id}`, { field: 'at' });
    }
    this.deps.store.put(next);
    this.deps.audit.append({ user: by.user, action: 'schedule.update', outcome: 'updated', destination: next.destination, ...vmOf(next.target), detail: { ...describe(next), changed: Object.keys(patch) } });
    this.arm();
    return next;
  }

  remove(id: string, by: Principal): void {
    const current = this.get(id);
    this.mayChange(current, by);
    this.deps.store.remove(id);
    this.deps.audit.append({ user: by.user, action: 'schedule.delete', outcome: 'deleted', destination: current.destination, ...vmOf(current.target), detail: describe(current) });
    this.arm();
  }

  private mayChange(schedule: ScheduleInfo, by: Principal): void {
    if (schedule.owner !== by.user && by.role !== 'admin') {
      throw new MotusError('MOTUS_E_FORBIDDEN', `schedule ${schedule.id} belongs to ${schedule.owner}; only its owner or an admin may change it`, { schedule: schedule.id, owner: schedule.owner, user: by.user });
    }
  }

  private when(at: string | undefined, cron: string | undefined): Pick<ScheduleInfo, 'at' | 'cron' | 'nextRunAt'> {
    if ((at === undefined) === (cron === undefined)) {
      throw new MotusError('MOTUS_E_INVALID_REQUEST', 'at, cron: give exactly one of at (a UTC time) and cron (a 5-field expression)', { field: at === undefined ? 'at' : 'cron' });
    }
    if (at !== undefined) {
      const time = Date.parse(at);
      if (!/^\d{4}-\d{2}-\d{2}T/.test(at) || Number.isNaN(time)) {
        throw new MotusError('MOTUS_E_INVALID_REQUEST', `at: '${at}' is not an ISO 8601 time such as 2026-01-31T22:00:00Z`, { field: 'at' });
      }
      if (!/(Z|[+-]\d{2}:?\d{2})$/.test(at)) throw new MotusError('MOTUS_E_INVALID_REQUEST', `at: '${at}' has no time zone; end it with Z for UTC`, { field: 'at' });
      if (time <= Date.now()) throw new MotusError('MOTUS_E_INVALID_REQUEST', `at: ${new Date(time).toISOString()} is in the past`, { field: 'at' });
      const iso = new Date(time).toISOString();
      return { at: iso, nextRunAt: iso };
    }
    const parsed = parseCron(cron!, 'cron');
    return { cron: cron!.trim(), nextRunAt: nextCronTime(parsed, new Date())!.toISOString() };
  }

  private checkTarget(target: ScheduleTarget): void {
    if ('vms' in target) {
      const known = new Set(this.deps.vms().map((vm) => vm.name));
      target.vms.forEach((name, index) => {
        if (!known.has(name)) throw new MotusError('MOTUS_E_VM_NOT_FOUND', `target.vms.${index}: no VM named ${name}`, { field: `target.vms.${index}`, vm: name });
      });
    }
  }

  private checkDestination(host: string): void {
    if (!this.deps.knownHost(host)) throw new MotusError('MOTUS_E_HOST_NOT_FOUND', `destination: no host named ${host}`, { field: 'destination', host });
  }

  /** Sleeps until the earliest due schedule (re-reading the clock at least every minute). */
  private arm(): void {
    clearTimeout(this.timer);
    if (this.stopped) return;
    const due = this.deps.store
      .all()
      .filter((s) => s.enabled && s.nextRunAt)
      .map((s) => Date.parse(s.nextRunAt!));
    if (due.length === 0) return;
    const delay = Math.max(0, Math.min(MAX_SLEEP_MS, Math.min(...due) - Date.now()));
    this.timer = setTimeout(() => this.fire(), delay);
    this.timer.unref();
  }

  private fire(): void {
    const now = Date.now();
    for (const schedule of this.deps.store.all()) {
      if (schedule.enabled && schedule.nextRunAt && Date.parse(schedule.nextRunAt) <= now) void this.run(schedule);
    }
    this.arm();
  }

  private async run(schedule: ScheduleInfo, note?: string): Promise<void> {
    const owner = this.deps.identities.user(schedule.owner);
    const dueAt = schedule.nextRunAt;
    if (!owner || !allows(owner.role, 'operator')) {
      const why = owner ? `its owner ${owner.name} is ${owner.role} now, and migrating needs operator` : `its owner ${schedule.owner} no longer exists`;
      this.deps.audit.append({ user: schedule.owner, action: 'schedule.run', outcome: 'refused', destination: schedule.destination, ...vmOf(schedule.target), detail: { schedule: schedule.id, reason: why } });
      this.advance(schedule, `refused: ${why}`);
      return;
    }
    const vms = this.targets(schedule.target);
    this.advance(schedule, `queued ${vms.length} task(s)${note ? `, ${note}` : ''}`);
    this.deps.audit.append({ user: owner.name, action: 'schedule.run', outcome: `${vms.length} task(s)`, destination: schedule.destination, ...vmOf(schedule.target), detail: { schedule: schedule.id, dueAt, vms, ...(note ? { note } : {}) } });
    await Promise.all(
      vms.map((vm) =>
        this.deps.submit({ vm, destination: schedule.destination, priority: schedule.priority, requestedBy: owner.name, scheduleId: schedule.id }).catch((err: unknown) => {
          // The refusal itself is in the trail (migration.rejected); the log says which schedule made it.
          this.deps.logger.warn('a scheduled migration was refused', { schedule: schedule.id, vm, error: (err as Error).message });
        }),
      ),
    );
  }

  /** Records a run (or a skipped one) and moves the schedule to its next time; a one-shot schedule is then done. */
  private advance(schedule: ScheduleInfo, outcome: string): void {
    const current = this.deps.store.get(schedule.id);
    if (!current) return;
    const next: ScheduleInfo = { ...current, lastRunAt: new Date().toISOString(), lastOutcome: outcome };
    if (current.cron) {
      next.nextRunAt = nextCronTime(parseCron(current.cron), new Date())!.toISOString();
    } else {
      next.enabled = false;
      delete next.nextRunAt;
    }
    this.deps.store.put(next);
  }

  private targets(target: ScheduleTarget): string[] {
    const names = this.deps.vms().map((vm) => vm.name);
    if ('vms' in target) return target.vms;
    if ('tag' in target) return this.deps.vms().filter((vm) => vm.spec.tags?.includes(target.tag)).map((vm) => vm.name);
    const pattern = globToRegExp(target.pattern);
    return names.filter((name) => pattern.test(name));
  }
}

function vmOf(target: ScheduleTarget): { vm?: string } {
  return 'vms' in target && target.vms.length === 1 ? { vm: target.vms[0]! } : {};
}

function describe(schedule: ScheduleInfo): Record<string, unknown> {
  return {
    schedule: schedule.id,
    owner: schedule.owner,
    target: schedule.target,
    priority: schedule.priority,
    enabled: schedule.enabled,
    ...(schedule.at ? { at: schedule.at } : {}),
    ...(schedule.cron ? { cron: schedule.cron } : {}),
  };
}
