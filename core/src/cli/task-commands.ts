import type { AuditQuery, MotusClient, Role, ScheduleInfo, ScheduleRequest, ScheduleTarget, TaskInfo } from '@motus/sdk';
import { table } from './format.js';
import { usage, type CliIo, type Values } from './motus-cli.js';

export interface CommandContext {
  client: MotusClient;
  values: Values;
  out(value: unknown, human: () => string): void;
  io: CliIo;
  json: boolean;
  positionals: string[];
}

/** --at: an ISO 8601 time with its zone (…Z), or +N s/m/h from now. */
export function parseAt(text: string, now = Date.now()): string {
  const relative = /^\+(\d+)(s|m|h)$/.exec(text);
  if (relative) return new Date(now + Number(relative[1]) * { s: 1_000, m: 60_000, h: 3_600_000 }[relative[2] as 's' | 'm' | 'h']).toISOString();
  return text;
}

function priorityOf(values: Values): 'high' | 'normal' | undefined {
  const priority = values.priority;
  if (priority === undefined) return undefined;
  if (priority !== 'high' && priority !== 'normal') throw usage('--priority is high or normal');
  return priority;
}

function short(iso: string | undefined): string {
  return iso ? iso.replace('T', ' ').slice(0, 19) : '-';
}

export async function tasksCommand({ client, out }: CommandContext): Promise<number> {
  const tasks = await client.tasks();
  out(tasks, () =>
    table(
      ['TASK', 'VM', 'TO', 'PRIORITY', 'STATE', 'BY', 'CREATED', 'STARTED', 'NOTE'],
      tasks.map((t: TaskInfo) => [
        t.id,
        t.vm,
        t.destination,
        t.priority,
        t.state,
        t.requestedBy,
        short(t.createdAt),
        short(t.startedAt),
        t.error ? t.error.code : t.waitingFor ? `waits for ${t.waitingFor}` : t.scheduleId ? `schedule ${t.scheduleId}` : '',
      ]),
    ),
  );
  return 0;
}

function scheduleRows(list: ScheduleInfo[]): string {
  return table(
    ['SCHEDULE', 'OWNER', 'VMS', 'TO', 'PRIORITY', 'WHEN', 'ENABLED', 'NEXT', 'LAST'],
    list.map((s) => [
      s.id,
      s.owner,
      'vms' in s.target ? s.target.vms.join(',') : 'tag' in s.target ? `tag:${s.target.tag}` : s.target.pattern,
      s.destination,
      s.priority,
      s.cron ? `cron '${s.cron}'` : `at ${short(s.at)}`,
      s.enabled ? 'yes' : 'no',
      short(s.nextRunAt),
      s.lastRunAt ? `${short(s.lastRunAt)} ${s.lastOutcome ?? ''}` : '-',
    ]),
  );
}

/** The VMs a schedule moves: names, or --pattern GLOB, or --tag TAG (one of them); undefined when none is given. */
function targetOf(values: Values, names: string[]): ScheduleTarget | undefined {
  const given = [names.length > 0, typeof values.pattern === 'string', typeof values.tag === 'string'].filter(Boolean).length;
  if (given > 1) throw usage('give VM names, --pattern or --tag: one of them');
  if (typeof values.pattern === 'string') return { pattern: values.pattern };
  if (typeof values.tag === 'string') return { tag: values.tag };
  return names.length > 0 ? { vms: names } : undefined;
}

export async function schedulesCommand({ client, values, out, positionals }: CommandContext): Promise<number> {
  const [, sub, ...rest] = positionals;
  const timing = (): Pick<ScheduleRequest, 'at' | 'cron'> => {
    if (values.at !== undefined && values.cron !== undefined) throw usage('give --at or --cron, not both');
    if (values.at !== undefined) return { at: parseAt(values.at as string) };
    if (values.cron !== undefined) return { cron: values.cron as string };
    return {};
  };
  switch (sub ?? 'list') {
    case 'list': {
      const list = await client.schedules();
      out(list, () => scheduleRows(list));
      return 0;
    }
    case 'add': {
      if (typeof values.to !== 'string') throw usage('motus schedules add VM… | --pattern GLOB | --tag TAG --to HOST (--at TIME | --cron EXPR)');
      const target = targetOf(values, rest);
      if (!target) throw usage('name the VMs to move, or give --pattern GLOB or --tag TAG');
      const priority = priorityOf(values);
      const schedule = await client.createSchedule({ target, destination: values.to, ...(priority ? { priority } : {}), ...timing() });
      out(schedule, () => `schedule ${schedule.id} created, next run at ${schedule.nextRunAt ?? '-'}`);
      return 0;
    }
    case 'edit': {
      const id = rest[0];
      if (!id) throw usage('motus schedules edit ID [--to H] [--at T | --cron E] [--priority P] [--pattern G | --tag T] [--enable | --disable]');
      const target = targetOf(values, rest.slice(1));
      if (values.enable && values.disable) throw usage('give --enable or --disable, not both');
      const priority = priorityOf(values);
      const patch: Partial<ScheduleRequest> = {
        ...timing(),
        ...(typeof values.to === 'string' ? { destination: values.to } : {}),
        ...(priority ? { priority } : {}),
        ...(target ? { target } : {}),
        ...(values.enable ? { enabled: true } : values.disable ? { enabled: false } : {}),
      };
      if (Object.keys(patch).length === 0) throw usage('say what to change: --to, --at, --cron, --priority, --pattern, --tag, --enable or --disable');
      const schedule = await client.updateSchedule(id, patch);
      out(schedule, () => scheduleRows([schedule]));
      return 0;
    }
    case 'remove':
    case 'delete': {
      const id = rest[0];
      if (!id) throw usage('motus schedules remove ID');
      await client.deleteSchedule(id);
      out({ removed: id }, () => `schedule ${id} removed`);
      return 0;
    }
    default:
      throw usage(`unknown schedules command '${sub}'`);
  }
}

export async function auditCommand({ client, values, out, io, positionals }: CommandContext): Promise<number> {
  if (positionals[1] === 'verify') {
    const result = await client.verifyAudit();
    out(result, () => `audit trail verified: ${result.records} records, head ${result.headHash}`);
    return 0;
  }
  if (positionals[1] !== undefined) throw usage(`unknown audit command '${positionals[1]}' (motus audit [filters] or motus audit verify)`);
  const query: AuditQuery = {};
  for (const key of ['vm', 'user', 'host', 'since', 'until'] as const) {
    const value = values[key];
    if (typeof value === 'string') query[key] = key === 'since' || key === 'until' ? pastTime(value) : value;
  }
  if (typeof values.limit === 'string') {
    const n = Number(values.limit);
    if (!Number.isInteger(n) || n < 1) throw usage(`--limit takes a positive whole number, not '${values.limit}'`);
    query.limit = n;
  }
  const format = values.format;
  if (format !== undefined) {
    if (format !== 'jsonl' && format !== 'csv') throw usage(`--format is jsonl or csv, not '${String(format)}'`);
    io.stdout.write(await client.auditExport(query, format));
    return 0;
  }
  const records = await client.audit(query);
  out(records, () =>
    table(
      ['SEQ', 'TIME', 'USER', 'ACTION', 'OUTCOME', 'VM', 'FROM', 'TO', 'TASK', 'DOWNTIME'],
      records.map((r) => [
        String(r.seq),
        r.at.replace('T', ' ').slice(0, 23),
        r.user,
        r.action,
        r.outcome,
        r.vm ?? '',
        r.source ?? '',
        r.destination ?? '',
        r.task ?? '',
        r.downtimeMs === undefined ? '' : `${r.downtimeMs} ms`,
      ]),
    ),
  );
  return 0;
}

/** --since/--until: an ISO 8601 time, or -N s/m/h before now. */
function pastTime(text: string): string {
  const m = /^-(\d+)(s|m|h)$/.exec(text);
  if (!m) return text;
  return new Date(Date.now() - Number(m[1]) * { s: 1_000, m: 60_000, h: 3_600_000 }[m[2] as 's' | 'm' | 'h']).toISOString();
}

export async function adminCommand({ client, values, out, positionals }: CommandContext): Promise<number> {
  const [verb, sub, name] = positionals;
  if (verb === 'whoami') {
    const me = await client.whoami();
    out(me, () => `${me.user} (${me.role}), token ${me.tokenId}`);
    return 0;
  }
  if (verb === 'user' || verb === 'users') {
    switch (sub ?? 'list') {
      case 'list': {
        const users = await client.users();
        out(users, () => table(['USER', 'ROLE', 'CREATED', 'BY'], users.map((u) => [u.name, u.role, short(u.createdAt), u.createdBy])));
        return 0;
      }
      case 'add': {
        const role = values.role;
        if (!name || (role !== 'viewer' && role !== 'operator' && role !== 'admin')) throw usage('motus user add NAME --role viewer|operator|admin');
        const user = await client.addUser(name, role as Role);
        out(user, () => `user ${user.name} added (${user.role}); give them a token with: motus token create ${user.name}`);
        return 0;
      }
      case 'remove': {
        if (!name) throw usage('motus user remove NAME');
        await client.removeUser(name);
        out({ removed: name }, () => `user ${name} removed; their tokens are revoked`);
        return 0;
      }
      default:
        throw usage(`unknown user command '${sub}'`);
    }
  }
  switch (sub ?? 'list') {
    case 'list': {
      const tokens = await client.tokens(typeof values.user === 'string' ? values.user : undefined);
      out(tokens, () => table(['TOKEN', 'USER', 'LABEL', 'CREATED', 'REVOKED'], tokens.map((t) => [t.id, t.user, t.label, short(t.createdAt), short(t.revokedAt)])));
      return 0;
    }
    case 'create': {
      if (!name) throw usage('motus token create USER [--label L]');
      const token = await client.createToken(name, typeof values.label === 'string' ? values.label : undefined);
      out(token, () => `token ${token.id} for ${token.user} (shown once, stored hashed):\n${token.token}`);
      return 0;
    }
    case 'revoke': {
      if (!name) throw usage('motus token revoke ID');
      const token = await client.revokeToken(name);
      out(token, () => `token ${token.id} of ${token.user} revoked`);
      return 0;
    }
    default:
      throw usage(`unknown token command '${sub}'`);
  }
}
