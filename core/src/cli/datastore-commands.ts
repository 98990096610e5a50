import type { LunDatastoreView } from '@motus/sdk';
import { mib, table } from './format.js';
import { EXIT, usage } from './motus-cli.js';
import type { CommandContext } from './task-commands.js';

const ISCSI_PLUGIN = '@motus/storage-iscsi';

/**
 * `motus datastore show [NAME]`: every LUN of the site's iSCSI datastores with its
 * size and owner (the host whose reservation key is registered on it);
 * `motus datastore preempt DATASTORE LUN (--host H | --all) [--force]`: an admin
 * frees a LUN that a host which stays down still holds.
 */
export async function datastoreCommand({ client, values, out, positionals }: CommandContext): Promise<number> {
  const [, sub, name, lunText] = positionals;
  switch (sub ?? 'show') {
    case 'show':
    case 'list': {
      const views = await client.pluginCall<LunDatastoreView[]>(ISCSI_PLUGIN, 'datastores', name ? { datastore: name } : {});
      out(views, () => showText(views));
      return EXIT.ok;
    }
    case 'preempt': {
      const lun = Number(lunText);
      if (!name || lunText === undefined || !Number.isInteger(lun) || lun < 0) throw usage('motus datastore preempt DATASTORE LUN (--host HOST | --all) [--force]');
      const all = values.all === true;
      if (all === (typeof values.host === 'string')) throw usage('give --host HOST (whose registration to remove) or --all, one of them');
      const result = await client.pluginCall<{ before: string[]; after: string[]; removed: string[]; by: string }>(ISCSI_PLUGIN, 'preempt', {
        datastore: name,
        lun,
        ...(all ? { all: true } : { host: values.host }),
        ...(values.force ? { force: true } : {}),
      });
      out(result, () => `LUN ${lun} of ${name}: removed ${result.removed.join(', ') || 'nothing'} (from ${result.by}); registered now: ${result.after.join(', ') || 'nobody'}`);
      return EXIT.ok;
    }
    default:
      throw usage(`unknown datastore command '${sub ?? ''}' (motus datastore show [NAME] | preempt DATASTORE LUN --host H|--all [--force])`);
  }
}

function showText(views: LunDatastoreView[]): string {
  const rows = views.flatMap((ds) =>
    ds.luns.map((l) => [ds.name, String(l.lun), l.naa ?? '-', mib(l.bytes), l.owner ?? (l.keys.length > 0 ? `key ${l.keys.join(',')}` : '-'), l.seenBy.join(',')]),
  );
  const lines = [table(['DATASTORE', 'LUN', 'NAA', 'SIZE', 'OWNER', 'SEEN BY'], rows)];
  for (const ds of views) {
    lines.push(`${ds.name}: ${ds.portal} ${ds.target}, ${mib(ds.capacityBytes)}, ${mib(ds.freeBytes)} free (LUNs nobody holds)`);
    for (const u of ds.unreachable) lines.push(`${ds.name}: ${u.host} cannot reach it: ${u.error}`);
  }
  return lines.join('\n');
}
