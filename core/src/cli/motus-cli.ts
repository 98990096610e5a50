import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { MotusClient, MotusError, type MigrationSummary, type MotusErrorCode, type VmSpec } from '@motus/sdk';
import { cpuCommand } from './cpu-commands.js';
import { clusterCommand, hostCommand, rankingText } from './placement-commands.js';
import { datastoreCommand } from './datastore-commands.js';
import { adminCommand, auditCommand, parseAt, schedulesCommand, tasksCommand } from './task-commands.js';
import { readClientFile } from '../daemon/state-files.js';
import { describeEvent, mib, progressLine, table } from './format.js';
import { netCommand } from './net-commands.js';

export interface CliIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stderr: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
}

/** Exit codes scripts can rely on (docs/cli.md). */
export const EXIT = { ok: 0, failed: 1, usage: 2, notFound: 3, refused: 4, unreachable: 5, forbidden: 6 } as const;

const USAGE = `motus — drive a Motus site

  motus hosts                                   hosts, state, memory, hypervisor
  motus vm list                                 VMs and where they run
  motus vm start NAME [--host H | --recommend] [--memory MiB] [--vcpus N]
                 [--cpu MODEL[,-feat…] | --cpu-hide FEAT,… | --cpu-pin MODEL]
                 (--kernel FILE [--initrd FILE] [--append ARGS] | --spec FILE.json)
                 [--tag TAG,…]   without --cpu, a cpu-compat site records the cluster baseline (with the mask)
                 without --host: the wizard's best host (partial/automatic clusters); --recommend: the ranking only
  motus vm stop NAME
  motus vm tag NAME [TAG…]                      replace the VM's tags (none: remove them all)
  motus migrate VM --to HOST [--priority high|normal] [--no-wait] [--force]
                                                --force: go though it breaks a placement rule (audited)
                 [--at TIME | --cron EXPR]      TIME: ISO 8601 UTC (…Z) or +90s, +5m, +2h
  motus migrate cancel TASK                     cancel a queued or running migration task
  motus cpu baseline                            the cluster CPU baseline and the hosts it refuses
  motus cpu baseline --dry-run MODEL|auto       which running VMs that baseline would affect (nothing changes)
  motus cpu check VM --to HOST                  dry run: may VM's CPU run on HOST? (exit 4 when not)
  motus cpu matrix [--host H,…]                 every VM against every host of the cluster
  motus migrate VM --recommend                  every host ranked as its destination, with reasons
  motus migrate VM [--priority high|normal]     to the wizard's best destination
  motus host maintenance enter|exit HOST [--allow-running] [--no-wait]
  motus host health HOST | motus host usage HOST  
  motus cluster [list] | motus cluster balance NAME [--apply]
  motus cluster set NAME [--mode manual|partial|automatic] [--threshold 1-5] [--interval S]
  motus datastore show [NAME]                   iSCSI LUNs: NAA id, size, owner (reservation holder), hosts seeing them
  motus datastore preempt DS LUN (--host H | --all) [--force]   free a LUN a dead host still holds (admin)
  motus migrations                              every migration, newest first
  motus migration ID                            one migration's summary and events
  motus tasks                                   migration tasks: queued, running, ended
  motus schedules [list]                        scheduled migrations
  motus schedules add VM… | --pattern GLOB | --tag TAG --to HOST (--at TIME | --cron EXPR) [--priority P]
  motus schedules edit ID [--to H] [--at T | --cron E] [--priority P] [--pattern G | --tag T] [--enable | --disable]
  motus schedules remove ID
  motus audit [--vm V] [--user U] [--host H] [--since T] [--until T] [--limit N] [--format jsonl|csv]
  motus audit verify                            check the audit trail's hash chain
  motus user add NAME --role viewer|operator|admin | motus user list | motus user remove NAME
  motus token create USER [--label L] | motus token list [--user U] | motus token revoke ID
  motus whoami                                  the token's user and role
  motus ca                                      the site CA: generation, fingerprint, validity
  motus ca rotate                               a new site CA; every host gets a new certificate
  motus cancel ID                               same as motus migrate cancel
  motus events                                  follow the site's events
  motus net show                                every switch: ports (frames, bytes, drops, queued), uplink, MAC table size
  motus net capture NETWORK|PORT|uplink --out FILE --duration S [--host H]
                                                pcap of a network (every host, or H), a port <vm>.<nic>, or H's uplink

Options: --json (one JSON object per line for streams), --state DIR | MOTUS_STATE,
         --url URL --token T | MOTUS_URL MOTUS_TOKEN, --ca FILE | MOTUS_CA (the site CA
         the server's certificate is checked with; client.json carries it).
         Every request acts as the token's user.`;

const EXIT_OF: Partial<Record<MotusErrorCode, number>> = {
  MOTUS_E_INVALID_REQUEST: EXIT.usage,
  MOTUS_E_NOT_FOUND: EXIT.notFound,
  MOTUS_E_VM_NOT_FOUND: EXIT.notFound,
  MOTUS_E_HOST_NOT_FOUND: EXIT.notFound,
  MOTUS_E_VM_EXISTS: EXIT.refused,
  MOTUS_E_VM_BUSY: EXIT.refused,
  MOTUS_E_VM_NOT_RUNNING: EXIT.refused,
  MOTUS_E_SAME_HOST: EXIT.refused,
  MOTUS_E_HOST_DOWN: EXIT.refused,
  MOTUS_E_INSUFFICIENT_MEMORY: EXIT.refused,
  MOTUS_E_MIGRATION_VETOED: EXIT.refused,
  MOTUS_E_AGENT_UNREACHABLE: EXIT.unreachable,
  MOTUS_E_UNAUTHORIZED: EXIT.unreachable,
  MOTUS_E_FORBIDDEN: EXIT.forbidden,
  MOTUS_E_USER_EXISTS: EXIT.refused,
  MOTUS_E_RESERVATION_FAILED: EXIT.refused,
  MOTUS_E_FENCED: EXIT.refused,
  MOTUS_E_NO_DESTINATION: EXIT.refused,
  MOTUS_E_PLACEMENT_RULE: EXIT.refused,
  MOTUS_E_PLACEMENT_MANUAL: EXIT.refused,
  MOTUS_E_EVACUATION_BLOCKED: EXIT.refused,
  MOTUS_E_AUDIT_TAMPERED: EXIT.failed,
  MOTUS_E_PAYLOAD_TOO_LARGE: EXIT.usage,
  MOTUS_E_RATE_LIMITED: EXIT.unreachable,
  MOTUS_E_TLS_UNAVAILABLE: EXIT.refused,
  MOTUS_E_TLS: EXIT.unreachable,
};

export function exitCodeOf(code: MotusErrorCode): number {
  return EXIT_OF[code] ?? EXIT.failed;
}

export async function runCli(argv: string[], io: CliIo): Promise<number> {
  let json = argv.includes('--json');
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        json: { type: 'boolean' },
        state: { type: 'string' },
        url: { type: 'string' },
        token: { type: 'string' },
        ca: { type: 'string' },
        user: { type: 'string' },
        host: { type: 'string' },
        to: { type: 'string' },
        priority: { type: 'string' },
        'no-wait': { type: 'boolean' },
        memory: { type: 'string' },
        vcpus: { type: 'string' },
        cpu: { type: 'string' },
        'cpu-hide': { type: 'string' },
        'cpu-pin': { type: 'string' },
        kernel: { type: 'string' },
        initrd: { type: 'string' },
        append: { type: 'string' },
        spec: { type: 'string' },
        out: { type: 'string' },
        duration: { type: 'string' },
        at: { type: 'string' },
        cron: { type: 'string' },
        pattern: { type: 'string' },
        tag: { type: 'string' },
        role: { type: 'string' },
        label: { type: 'string' },
        vm: { type: 'string' },
        since: { type: 'string' },
        until: { type: 'string' },
        limit: { type: 'string' },
        format: { type: 'string' },
        enable: { type: 'boolean' },
        all: { type: 'boolean' },
        force: { type: 'boolean' },
        disable: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        recommend: { type: 'boolean' },
        'allow-running': { type: 'boolean' },
        apply: { type: 'boolean' },
        mode: { type: 'string' },
        threshold: { type: 'string' },
        interval: { type: 'string' },
        'dry-run': { type: 'string' },
      },
    });
    json = values.json ?? false;
    if (values.help || positionals.length === 0) {
      io.stdout.write(USAGE + '\n');
      return values.help ? EXIT.ok : EXIT.usage;
    }
    const out = (value: unknown, human: () => string) => io.stdout.write((json ? JSON.stringify(value) : human()) + '\n');
    const client = clientFrom(values, io.env);
    const [verb, sub, arg] = positionals;
    const context = { client, values, out, io, json, positionals };
    switch (verb) {
      case 'hosts': {
        const hosts = await client.hosts();
        out(hosts, () =>
          table(
            ['HOST', 'STATE', 'MEMORY USED/TOTAL', 'CPUS', 'HYPERVISOR', 'URL'],
            hosts.map((h) => [
              h.name,
              h.state,
              `${h.memoryUsedMiB}/${h.memoryTotalMiB} MiB`,
              String(h.cpus),
              h.hypervisor ? `${h.hypervisor.kind} ${h.hypervisor.version} (${h.hypervisor.accelerator})` : '-',
              h.url,
            ]),
          ),
        );
        return EXIT.ok;
      }
      case 'vm':
        return await vmCommand(client, sub, arg, positionals.slice(3), values, out);
      case 'migrate': {
        if (sub === 'cancel') {
          if (!arg) throw usage('motus migrate cancel TASK');
          const task = await client.cancelTask(arg);
          out(task, () => (task.state === 'cancelled' ? `task ${task.id} cancelled (it never started)` : `cancelling task ${task.id}: it rolls back to the source`));
          return EXIT.ok;
        }
        if (!sub) throw usage('motus migrate VM [--to HOST | --recommend]');
        if (values.recommend) {
          if (values.to !== undefined) throw usage('--recommend ranks every host; leave out --to');
          const ranking = await client.placement(sub);
          out(ranking, () => rankingText(ranking));
          return EXIT.ok;
        }
        if (!values.to) {
          if (values.at !== undefined || values.cron !== undefined) throw usage('a scheduled migration names its destination (--to HOST)');
          if (values.force) throw usage('--force lets a migration --to HOST break placement rules; the wizard never breaks them');
          const priority = values.priority ?? 'normal';
          if (priority !== 'high' && priority !== 'normal') throw usage('--priority is high or normal');
          const { ranking, migration } = await client.relocate(sub, priority);
          if (!json) io.stdout.write(`${sub}: best destination ${migration.destination} (score ${ranking.candidates[0]?.score.toFixed(1) ?? '-'})\n`);
          if (values['no-wait']) {
            out(migration, () => `task ${migration.id} ${migration.state === 'queued' ? 'queued' : 'started'}: ${migration.vm} ${migration.source} -> ${migration.destination}`);
            return EXIT.ok;
          }
          return await follow(client, migration.id, json, io);
        }
        if (values.user !== undefined) throw usage('--user filters audit and token lists; a migration is recorded as the token\'s user');
        const priority = values.priority ?? 'normal';
        if (priority !== 'high' && priority !== 'normal') throw usage('--priority is high or normal');
        if (values.at !== undefined || values.cron !== undefined) {
          if (values.at !== undefined && values.cron !== undefined) throw usage('give --at or --cron, not both');
          if (values.force) throw usage('--force applies to a migration now, not to a schedule');
          const schedule = await client.createSchedule({
            target: { vms: [sub] },
            destination: values.to,
            priority,
            ...(values.at !== undefined ? { at: parseAt(values.at) } : { cron: values.cron! }),
          });
          out(schedule, () => `schedule ${schedule.id}: ${sub} -> ${schedule.destination} ${schedule.cron ? `on '${schedule.cron}'` : 'once'}, next at ${schedule.nextRunAt ?? '-'}`);
          return EXIT.ok;
        }
        const summary = await client.migrate({ vm: sub, destination: values.to, priority, ...(values.force ? { ignoreRules: true } : {}) });
        if (values['no-wait']) {
          out(summary, () => `task ${summary.id} ${summary.state === 'queued' ? 'queued' : 'started'}: ${summary.vm} ${summary.source} -> ${summary.destination}`);
          return EXIT.ok;
        }
        if (summary.state === 'queued' && !json) io.stdout.write(`task ${summary.id} queued: waiting for room under the concurrency limits\n`);
        return await follow(client, summary.id, json, io);
      }
      case 'tasks':
        return await tasksCommand(context);
      case 'host':
        return await hostCommand(context);
      case 'cluster':
      case 'clusters':
        return await clusterCommand(context);
      case 'schedules':
      case 'schedule':
        return await schedulesCommand(context);
      case 'audit':
        return await auditCommand(context);
      case 'net':
        return await netCommand(context);
      case 'user':
      case 'users':
      case 'token':
      case 'tokens':
      case 'whoami':
        return await adminCommand(context);
      case 'cpu':
        return await cpuCommand(context);
      case 'datastore':
      case 'datastores':
        return await datastoreCommand(context);
      case 'ca': {
        if (sub === 'rotate') {
          const result = await client.rotateCa();
          out(result, () =>
            [
              `site CA rotated: generation ${result.ca.generation}, SHA-256 ${result.ca.fingerprint256}`,
              `hosts renewed: ${result.renewed.join(', ') || 'none'}`,
              ...result.failed.map((f) => `host ${f.host} NOT renewed: ${f.error} (it enrolls again when its agent restarts)`),
            ].join('\n'),
          );
          return result.failed.length === 0 ? EXIT.ok : EXIT.failed;
        }
        if (sub !== undefined && sub !== 'show') throw usage(`unknown ca command '${sub}' (motus ca, motus ca rotate)`);
        const ca = await client.ca();
        out(ca, () =>
          [
            `site CA generation ${ca.generation}: ${ca.subject}`,
            `  SHA-256 ${ca.fingerprint256}, valid ${ca.notBefore} to ${ca.notAfter}`,
            ...(ca.previous ? [`  previous CA still trusted: ${ca.previous.subject} (SHA-256 ${ca.previous.fingerprint256})`] : []),
          ].join('\n'),
        );
        return EXIT.ok;
      }
      case 'migrations': {
        const list = await client.migrations();
        out(list, () => table(['ID', 'VM', 'FROM', 'TO', 'STATE', 'DOWNTIME', 'TOTAL', 'BY', 'REQUESTED'], list.map(migrationRow)));
        return EXIT.ok;
      }
      case 'migration': {
        if (!sub) throw usage('motus migration ID');
        const summary = await client.migration(sub);
        if (json) {
          io.stdout.write(JSON.stringify(summary) + '\n');
          for await (const event of client.migrationEvents(sub)) io.stdout.write(JSON.stringify(event) + '\n');
          return EXIT.ok;
        }
        io.stdout.write(table(['ID', 'VM', 'FROM', 'TO', 'STATE', 'DOWNTIME', 'TOTAL', 'BY', 'REQUESTED'], [migrationRow(summary)]) + '\n');
        return EXIT.ok;
      }
      case 'cancel': {
        if (!sub) throw usage('motus cancel ID');
        const task = await client.cancelTask(sub);
        out(task, () => `cancelling ${sub}`);
        return EXIT.ok;
      }
      case 'events': {
        for await (const event of client.events()) {
          io.stdout.write((json ? JSON.stringify(event) : `${event.at} ${event.stream} ${event.type}`) + '\n');
        }
        return EXIT.ok;
      }
      default:
        throw usage(`unknown command '${verb}'`);
    }
  } catch (err) {
    const error = err instanceof MotusError ? err : MotusError.from(err, (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') ? 'MOTUS_E_INVALID_REQUEST' : 'MOTUS_E_INTERNAL');
    if (json) io.stdout.write(JSON.stringify({ error: error.toJSON() }) + '\n');
    io.stderr.write(`motus: ${error.code}: ${error.message}\n`);
    return EXIT_OF[error.code] ?? EXIT.failed;
  }
}

export type Values = Record<string, string | boolean | undefined>;

async function vmCommand(client: MotusClient, sub: string | undefined, name: string | undefined, tags: string[], values: Values, out: (v: unknown, human: () => string) => void): Promise<number> {
  switch (sub) {
    case 'list': {
      const vms = await client.vms();
      out(vms, () =>
        table(
          ['VM', 'HOST', 'STATE', 'MEMORY', 'VCPUS', 'CPU', 'PID', 'TAGS'],
          vms.map((v) => [v.name, v.host, v.state, `${v.spec.memoryMiB} MiB`, String(v.spec.vcpus), v.spec.cpuModel ?? 'qemu64', v.pid ? String(v.pid) : '-', (v.spec.tags ?? []).join(',') || '-']),
        ),
      );
      return EXIT.ok;
    }
    case 'start': {
      if (!name) throw usage('motus vm start NAME [--host HOST | --recommend] …');
      if (values.recommend) {
        if (values.host !== undefined) throw usage('--recommend ranks every host; leave out --host');
        const ranking = await client.recommendStart(specFrom(name, values));
        out(ranking, () => rankingText(ranking));
        return EXIT.ok;
      }
      const vm = await client.startVm(specFrom(name, values), typeof values.host === 'string' ? values.host : undefined);
      out(vm, () =>
        [
          `started ${vm.name} on ${vm.host} (pid ${vm.pid ?? '?'}, serial log ${vm.serialLog ?? '-'})`,
          ...(vm.placement ? [`placed by the wizard (cluster ${vm.placement.cluster}, ${vm.placement.mode}): score ${vm.placement.score.toFixed(1)}`, ...vm.placement.reasons.map((r) => `  ${r}`)] : []),
        ].join('\n'),
      );
      return EXIT.ok;
    }
    case 'tag': {
      if (!name) throw usage('motus vm tag NAME [TAG…]');
      const vm = await client.setVmTags(name, tags);
      out(vm, () => `${vm.name}: tags ${(vm.spec.tags ?? []).join(', ') || '(none)'}`);
      return EXIT.ok;
    }
    case 'stop': {
      if (!name) throw usage('motus vm stop NAME');
      await client.stopVm(name);
      out({ stopped: name }, () => `stopped ${name}`);
      return EXIT.ok;
    }
    default:
      throw usage(`unknown vm command '${sub ?? ''}'`);
  }
}

function specFrom(name: string, values: Values): VmSpec {
  if (typeof values.spec === 'string') {
    let spec: VmSpec;
    try {
      spec = JSON.parse(readFileSync(values.spec, 'utf8')) as VmSpec;
    } catch (err) {
      throw usage(`cannot read the VM spec ${values.spec}: ${(err as Error).message}`);
    }
    return { ...spec, name };
  }
  if (typeof values.kernel !== 'string') throw usage('give the guest with --kernel FILE (and --initrd, --append) or --spec FILE.json');
  const number = (key: string, fallback: number) => {
    const raw = values[key];
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n <= 0) throw usage(`--${key} takes a positive whole number, not '${String(raw)}'`);
    return n;
  };
  return {
    name,
    memoryMiB: number('memory', 256),
    vcpus: number('vcpus', 1),
    ...(typeof values.cpu === 'string' ? { cpuModel: values.cpu } : {}),
    ...cpuMaskFrom(values),
    ...(typeof values.tag === 'string' ? { tags: values.tag.split(',').filter((t) => t !== '') } : {}),
    boot: {
      kind: 'kernel',
      kernel: values.kernel,
      ...(typeof values.initrd === 'string' ? { initrd: values.initrd } : {}),
      ...(typeof values.append === 'string' ? { cmdline: values.append } : {}),
    },
  };
}

function cpuMaskFrom(values: Values): Pick<VmSpec, 'cpuMask'> {
  const hide = typeof values['cpu-hide'] === 'string' ? values['cpu-hide'].split(',').filter((f) => f !== '') : undefined;
  const pinModel = typeof values['cpu-pin'] === 'string' ? values['cpu-pin'] : undefined;
  if (hide === undefined && pinModel === undefined) return {};
  if (typeof values.cpu === 'string') throw usage('--cpu names the whole CPU; --cpu-hide and --cpu-pin change the cluster baseline: give one or the other');
  return { cpuMask: { ...(hide ? { hide } : {}), ...(pinModel ? { pinModel } : {}) } };
}

/** Follows a migration to its end: a progress bar on a terminal, lines otherwise, NDJSON with --json. */
async function follow(client: MotusClient, id: string, json: boolean, io: CliIo): Promise<number> {
  const tty = !json && io.stdout.isTTY === true;
  let barShown = false;
  let outcome: 'completed' | 'failed' = 'failed';
  let refusal: MotusErrorCode | undefined;
  for await (const event of client.migrationEvents(id)) {
    if (json) {
      io.stdout.write(JSON.stringify(event) + '\n');
    } else if (event.type === 'progress') {
      if (tty) {
        const width = Math.max(10, Math.min(30, (io.stdout.columns ?? 100) - 90));
        io.stdout.write(`\r\x1b[K${progressLine(event, width)}`);
        barShown = true;
      } else {
        io.stdout.write(progressLine(event) + '\n');
      }
    } else {
      if (barShown) {
        io.stdout.write('\n');
        barShown = false;
      }
      io.stdout.write(`${event.at.slice(11, 23)} ${describeEvent(event)}\n`);
    }
    if (event.type === 'completed') outcome = 'completed';
    if (event.type === 'rejected') refusal = event.error.code;
  }
  if (barShown) io.stdout.write('\n');
  if (outcome === 'completed') return EXIT.ok;
  return refusal && refusal !== 'MOTUS_E_MIGRATION_CANCELLED' ? exitCodeOf(refusal) : EXIT.failed;
}

function migrationRow(m: MigrationSummary): string[] {
  return [
    m.id,
    m.vm,
    m.source || '-',
    m.destination,
    m.state + (m.error ? ` (${m.error.code})` : ''),
    m.downtimeMs === undefined ? '-' : `${m.downtimeMs} ms`,
    m.totalTimeMs === undefined ? '-' : `${(m.totalTimeMs / 1000).toFixed(2)} s`,
    m.requestedBy,
    m.requestedAt.replace('T', ' ').slice(0, 19),
  ];
}

function clientFrom(values: Values, env: NodeJS.ProcessEnv): MotusClient {
  const url = (values.url as string | undefined) ?? env.MOTUS_URL;
  const token = (values.token as string | undefined) ?? env.MOTUS_TOKEN;
  const caFile = (values.ca as string | undefined) ?? env.MOTUS_CA;
  let ca: string | undefined;
  if (caFile) {
    try {
      ca = readFileSync(caFile, 'utf8');
    } catch (err) {
      throw usage(`--ca ${caFile} cannot be read: ${(err as Error).message}`);
    }
  }
  if (url && token) return new MotusClient({ url, token, ...(ca ? { ca } : {}) });
  const state = (values.state as string | undefined) ?? env.MOTUS_STATE;
  if (!state) throw usage('say where the site is: --state DIR or MOTUS_STATE, or --url and --token (MOTUS_URL, MOTUS_TOKEN)');
  let file;
  try {
    file = readClientFile(state);
  } catch {
    file = readClientFile(join(state, 'server'));
  }
  return new MotusClient({ ...file, ...(ca ? { ca } : {}) });
}

export function usage(message: string): MotusError {
  return new MotusError('MOTUS_E_INVALID_REQUEST', message);
}

