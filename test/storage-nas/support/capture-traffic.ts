/**
 * Records real ganesha traffic for the replay unit test:
 *   npx tsc -b test/storage-nas && node test/dist/storage-nas/support/capture-traffic.js
 * writes test/storage-nas/fixtures/ganesha-traffic.json.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { getPort, MOUNT_PROG, NFS_PROG, NfsClient } from '@motus/storage-nas';
import { startGanesha } from './ganesha.js';
import { FIXTURE_FILE, runTrafficScript, type TrafficFixture, type TrafficRecord } from './traffic-script.js';

const server = await startGanesha();
const records: TrafficRecord[] = [];
const tap = (service: TrafficRecord['service']) => (direction: 'call' | 'reply', record: Buffer) => records.push({ service, direction, hex: record.toString('hex') });
try {
  const nfsPort = await getPort(NFS_PROG, 3, { host: '127.0.0.1', timeoutMs: 5000, onRecord: tap('portmapper') });
  const mountPort = await getPort(MOUNT_PROG, 3, { host: '127.0.0.1', timeoutMs: 5000, onRecord: tap('portmapper') });
  const client = await NfsClient.connect({
    host: '127.0.0.1', export: server.exportPath, port: nfsPort, mountPort, uid: 0, gid: 0, timeoutMs: 10000,
    onRecord: (service, direction, record) => tap(service)(direction, record),
  });
  const summary = await runTrafficScript(client);
  await client.close();
  const fixture: TrafficFixture = {
    comment: 'ONC RPC records (without record marks) between the Motus NFS client and nfs-ganesha 4.3 (FSAL VFS), captured by capture-traffic.ts',
    exportPath: server.exportPath,
    records,
    summary,
  };
  const target = fileURLToPath(new URL(`../../../storage-nas/fixtures/${FIXTURE_FILE}`, import.meta.url));
  writeFileSync(target, JSON.stringify(fixture, null, 1) + '\n');
  console.log(`wrote ${records.length} records to ${target}`);
} finally {
  await server.stop();
}
