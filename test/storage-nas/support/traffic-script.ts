/**
 * The fixed sequence of operations whose traffic is recorded from a real ganesha
 * (capture-traffic.ts) and replayed in unit tests (recorded-traffic.test.ts). It
 * returns what the client made of the replies, minus times, so a replay can be
 * compared with what the real server produced.
 */
import { Access, isNasError, type NfsClient } from '@motus/storage-nas';

export const FIXTURE_FILE = 'ganesha-traffic.json';

export interface TrafficRecord {
  service: 'portmapper' | 'mount' | 'nfs';
  direction: 'call' | 'reply';
  hex: string;
}

export interface TrafficFixture {
  comment: string;
  exportPath: string;
  records: TrafficRecord[];
  summary: Record<string, unknown>;
}

export async function runTrafficScript(client: NfsClient): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  await client.nfs.null();
  out.fsinfo = { rtmax: client.info.rtmax, wtmax: client.info.wtmax, dtpref: client.info.dtpref, properties: client.info.properties };
  const fs = await client.fsstat();
  out.fsstatSane = fs.totalBytes > 0 && fs.freeBytes <= fs.totalBytes && fs.availableBytes <= fs.freeBytes;
  await client.mkdirp('fixture');
  await client.writeFile('fixture/hello.txt', 'hello, motus\n');
  const st = await client.stat('fixture/hello.txt');
  out.stat = { type: st.type, size: st.size, mode: st.mode, uid: st.uid, gid: st.gid, nlink: st.nlink };
  out.content = (await client.readFile('fixture/hello.txt')).toString('utf8');
  try {
    await client.stat('fixture/missing');
    out.missing = 'found';
  } catch (err) {
    out.missing = isNasError(err) ? { code: err.code, message: err.message } : String(err);
  }
  await client.createExclusive('fixture/vm.lck', 'owner=a\n', 0o600);
  await client.rename('fixture/vm.lck', 'fixture/vm.lock');
  out.list = (await client.list('fixture')).map((e) => ({ name: e.name, type: e.type, size: e.size, mode: e.mode })).sort((a, b) => a.name.localeCompare(b.name));
  out.access = (await client.access('fixture/hello.txt', Access.READ | Access.MODIFY)) & (Access.READ | Access.MODIFY);
  out.setattr = (await client.setAttributes('fixture/hello.txt', { mode: 0o640, size: 5 })).size;
  out.exports = (await client.exports()).length;
  await client.remove('fixture', { recursive: true });
  out.removed = !(await client.exists('fixture'));
  return out;
}
