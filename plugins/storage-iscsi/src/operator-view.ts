/**
 * The server side's view of the site's iSCSI datastores for operators: every
 * LUN with its size and owner, merged from what each host last reported, and
 * the preempt of a stuck registration, carried out by a host that sees the LUN.
 */
import { MotusError, type HostInfo, type LunDatastoreView, type LunView } from '@motus/sdk';
import { z } from 'zod';
import type { IscsiHostFacts } from './storage-provider.js';

/** The SDK's shapes: the CLI reads them without knowing this plugin. */
export type IscsiLunView = LunView;
export type IscsiDatastoreView = LunDatastoreView;

const PreemptPayload = z
  .object({
    datastore: z.string().min(1),
    lun: z.number().int().min(0).max(16383),
    host: z.string().min(1).optional(),
    all: z.literal(true).optional(),
    force: z.boolean().optional(),
  })
  .strict()
  .refine((p) => (p.host === undefined) !== (p.all === undefined), { message: 'give host (whose registration to remove) or all: true, one of them' });

const ShowPayload = z.object({ datastore: z.string().min(1).optional() }).strict();

function parse<T>(schema: z.ZodType<T>, payload: unknown, what: string): T {
  const result = schema.safeParse(payload ?? {});
  if (result.success) return result.data;
  const problems = result.error.issues.map((i) => `${i.path.map(String).join('.') || '(payload)'}: ${i.message}`);
  throw new MotusError('MOTUS_E_INVALID_REQUEST', `${what} is not valid: ${problems.join('; ')}`, { problems });
}

function factsOf(host: HostInfo, plugin: string): IscsiHostFacts | undefined {
  const f = host.plugins[plugin] as Partial<IscsiHostFacts> | undefined;
  return f && Array.isArray(f.datastores) ? (f as IscsiHostFacts) : undefined;
}

/** Every datastore as the hosts see it; the freshest scan of each LUN wins. */
export function datastoreViews(hosts: readonly HostInfo[], plugin: string, only?: string): IscsiDatastoreView[] {
  const views = new Map<string, IscsiDatastoreView & { scanned: Map<number, string> }>();
  for (const host of hosts) {
    for (const ds of factsOf(host, plugin)?.datastores ?? []) {
      if (only !== undefined && ds.name !== only) continue;
      let view = views.get(ds.name);
      if (!view) {
        view = { name: ds.name, portal: ds.portal, target: ds.target, seenBy: [], unreachable: [], capacityBytes: 0, freeBytes: 0, luns: [], scanned: new Map() };
        views.set(ds.name, view);
      }
      if (!ds.accessible) {
        view.unreachable.push({ host: host.name, error: ds.error ?? 'not accessible' });
        continue;
      }
      view.seenBy.push(host.name);
      for (const lun of ds.luns) {
        const at = ds.scannedAt ?? '';
        const index = view.luns.findIndex((l) => l.lun === lun.lun);
        if (index < 0) {
          view.luns.push({ ...lun, seenBy: [host.name] });
          view.scanned.set(lun.lun, at);
          continue;
        }
        const seenBy = [...view.luns[index]!.seenBy, host.name];
        if (at > (view.scanned.get(lun.lun) ?? '')) {
          view.luns[index] = { ...lun, seenBy };
          view.scanned.set(lun.lun, at);
        } else view.luns[index]!.seenBy = seenBy;
      }
    }
  }
  if (only !== undefined && !views.has(only)) throw new MotusError('MOTUS_E_NOT_FOUND', `no host reports an iSCSI datastore named ${only}`, { datastore: only });
  return [...views.values()].map(({ scanned: _scanned, ...view }) => {
    view.luns.sort((a, b) => a.lun - b.lun);
    view.capacityBytes = view.luns.reduce((s, l) => s + l.bytes, 0);
    view.freeBytes = view.luns.filter((l) => l.keys.length === 0).reduce((s, l) => s + l.bytes, 0);
    return view;
  });
}

export class IscsiOperatorView {
  constructor(
    private readonly plugin: string,
    private readonly site: { hosts(): Promise<HostInfo[]> },
    private readonly callAgent: (host: string, method: string, payload: unknown) => Promise<unknown>,
  ) {}

  async show(payload: unknown): Promise<IscsiDatastoreView[]> {
    const { datastore } = parse(ShowPayload, payload, 'a datastore query ({ datastore? })');
    return datastoreViews(await this.site.hosts(), this.plugin, datastore);
  }

  /**
   * Removes a host's registration from a LUN (or every registration). Refused
   * while that host is connected and reports the LUN as its lease, unless
   * `force`: its QEMU would be fenced.
   */
  async preempt(payload: unknown): Promise<unknown> {
    const request = parse(PreemptPayload, payload, 'a preempt request ({ datastore, lun, host | all, force? })');
    const hosts = await this.site.hosts();
    const holders = hosts.filter((h) => h.state === 'connected' && factsOf(h, this.plugin)?.leases.some((l) => l.datastore === request.datastore && l.lun === request.lun));
    const victims = request.all ? holders : holders.filter((h) => h.name === request.host);
    if (victims.length > 0 && !request.force) {
      throw new MotusError(
        'MOTUS_E_ISCSI_LUN_HELD',
        `LUN ${request.lun} of ${request.datastore} is the lease of connected host ${victims.map((h) => h.name).join(', ')} (VM ${factsOf(victims[0]!, this.plugin)!.leases.find((l) => l.lun === request.lun)!.vm}); preempting it kills that VM's QEMU — stop or move the VM, or say force`,
        { datastore: request.datastore, lun: request.lun, holders: victims.map((h) => h.name) },
      );
    }
    const by = hosts.find(
      (h) =>
        h.state === 'connected' &&
        h.name !== request.host &&
        !holders.some((v) => v.name === h.name) &&
        factsOf(h, this.plugin)?.datastores.some((d) => d.name === request.datastore && d.accessible),
    );
    if (!by) throw new MotusError('MOTUS_E_DATASTORE_NOT_VISIBLE', `no other connected host sees iSCSI datastore ${request.datastore} to preempt from`, { datastore: request.datastore });
    const result = (await this.callAgent(by.name, 'preempt', request.all ? { datastore: request.datastore, lun: request.lun, all: true } : { datastore: request.datastore, lun: request.lun, host: request.host })) as Record<string, unknown>;
    return { ...result, by: by.name };
  }
}
