import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { AUTH_SYS, decodeCall, decodeNfs3Results, decodeReply, decodeXdr, MOUNT_PROG, NFS3_OK_DECODERS, NFS_PROG, NfsClient, PMAP_PROG } from '@motus/storage-nas';
import { startFakeRpcServer, type FakeRpcServer } from '../support/fake-rpc-server.js';
import { FIXTURE_FILE, runTrafficScript, type TrafficFixture } from '../support/traffic-script.js';

const fixture = JSON.parse(readFileSync(fileURLToPath(new URL(`../../../storage-nas/fixtures/${FIXTURE_FILE}`, import.meta.url)), 'utf8')) as TrafficFixture;

interface Exchange {
  service: string;
  prog: number;
  proc: number;
  call: Buffer;
  reply: Buffer;
}

/** Pairs each recorded call with its reply by xid. */
function exchanges(): Exchange[] {
  const calls = new Map<string, { service: string; prog: number; proc: number; call: Buffer }>();
  const out: Exchange[] = [];
  for (const r of fixture.records) {
    const buf = Buffer.from(r.hex, 'hex');
    const key = `${r.service}:${buf.readUInt32BE(0)}`;
    if (r.direction === 'call') {
      const c = decodeCall(buf);
      if (!c.ok) throw new Error(`recorded call does not decode: ${c.error.message}`);
      calls.set(key, { service: r.service, prog: c.value.prog, proc: c.value.proc, call: buf });
    } else {
      const c = calls.get(key);
      if (!c) throw new Error(`recorded reply ${key} has no call`);
      out.push({ ...c, reply: buf });
    }
  }
  return out;
}

describe('storage-nas recorded ganesha traffic', () => {
  const all = exchanges();

  it('holds real exchanges for the portmapper, MOUNT and every NFS procedure the client uses', () => {
    const nfsProcs = new Set(all.filter((e) => e.prog === NFS_PROG).map((e) => e.proc));
    // NULL GETATTR SETATTR LOOKUP ACCESS READ WRITE CREATE MKDIR REMOVE RMDIR RENAME READDIRPLUS FSSTAT FSINFO COMMIT
    for (const p of [0, 1, 2, 3, 4, 6, 7, 8, 9, 12, 13, 14, 17, 18, 19, 21]) expect(nfsProcs.has(p), `NFS procedure ${p}`).to.equal(true);
    const mountProcs = new Set(all.filter((e) => e.prog === MOUNT_PROG).map((e) => e.proc));
    expect([...mountProcs].sort()).to.deep.equal([1, 3, 5]);
    expect(all.filter((e) => e.prog === PMAP_PROG)).to.have.length(2);
  });

  it('decodes every recorded reply as an accepted RPC reply to its call, and every call as AUTH_SYS or AUTH_NONE', () => {
    for (const e of all) {
      const reply = decodeReply(e.reply);
      expect(reply.ok).to.equal(true);
      if (!reply.ok) continue;
      expect(reply.reply.xid).to.equal(e.call.readUInt32BE(0));
      expect(reply.reply.body.status).to.equal('success');
      const call = decodeCall(e.call);
      expect(call.ok && [0, AUTH_SYS].includes(call.value.credFlavor)).to.equal(true);
    }
  });

  it('decodes the recorded GETPORT replies to the ports ganesha had', () => {
    for (const e of all.filter((x) => x.prog === PMAP_PROG)) {
      const reply = decodeReply(e.reply);
      if (!reply.ok || reply.reply.body.status !== 'success') throw new Error('bad GETPORT reply');
      const port = decodeXdr(reply.reply.body.results, (r) => r.uint32(), true);
      expect(port.ok && port.value > 0 && port.value < 65536).to.equal(true);
    }
  });

  it('decodes every recorded NFS result exactly, and refuses each one cut at every offset with a typed error', () => {
    let checked = 0;
    // NULL returns nothing, not even a status.
    for (const e of all.filter((x) => x.prog === NFS_PROG && x.proc !== 0)) {
      const reply = decodeReply(e.reply);
      if (!reply.ok || reply.reply.body.status !== 'success') throw new Error('bad reply');
      const results = reply.reply.body.results;
      const decoder = NFS3_OK_DECODERS[e.proc];
      expect(decoder, `decoder for procedure ${e.proc}`).to.be.a('function');
      const full = decodeNfs3Results(results, decoder!);
      expect(full.ok, `procedure ${e.proc}`).to.equal(true);
      if (!full.ok) continue;
      for (let cut = 0; cut < results.length; cut++) {
        const res = decodeNfs3Results(results.subarray(0, cut), decoder!);
        if (full.value.status === 0 || cut < 4) {
          expect(res.ok, `procedure ${e.proc} cut at ${cut}`).to.equal(false);
          if (!res.ok) expect(res.error.kind).to.equal('truncated');
        } else expect(res.ok && res.value.status).to.equal(full.value.status);
      }
      // Bytes past the end are an error too: a reply of another shape must not pass.
      const longer = decodeNfs3Results(Buffer.concat([results, Buffer.alloc(4)]), decoder!);
      if (full.value.status === 0) expect(longer.ok === false && longer.error.kind).to.equal('trailing-bytes');
      checked++;
    }
    expect(checked).to.be.greaterThan(30);
  });

  it('decodes the recorded ganesha replies into the values the server reported', () => {
    const decodedBy = (proc: number) =>
      all
        .filter((e) => e.prog === NFS_PROG && e.proc === proc)
        .map((e) => {
          const reply = decodeReply(e.reply);
          if (!reply.ok || reply.reply.body.status !== 'success') throw new Error('bad reply');
          const res = decodeNfs3Results(reply.reply.body.results, NFS3_OK_DECODERS[proc]!);
          if (!res.ok) throw new Error(res.error.message);
          return res.value;
        });
    const fsinfo = decodedBy(19)[0]!.value as { rtmax: number; wtmax: number };
    expect(fsinfo.rtmax).to.equal((fixture.summary.fsinfo as { rtmax: number }).rtmax);
    const lookups = decodedBy(3);
    expect(lookups.some((l) => l.status === 2)).to.equal(true);
    const writes = decodedBy(7).map((w) => w.value as { count: number; verifier: Buffer });
    const commits = decodedBy(21).map((c) => c.value as { verifier: Buffer });
    expect(writes[0]!.count).to.equal('hello, motus\n'.length);
    expect(commits[0]!.verifier.equals(writes[0]!.verifier)).to.equal(true);
    const reads = decodedBy(6).map((r) => r.value as { data: Buffer; eof: boolean });
    expect(reads[0]!.data.toString()).to.equal('hello, motus\n');
    const dirs = decodedBy(17).map((d) => d.value as { entries: { name: string }[] });
    expect(dirs.flatMap((d) => d.entries.map((x) => x.name))).to.include.members(['.', '..', 'hello.txt', 'vm.lock']);
  });

  it('replays the recorded replies to the client and gets the same results as against the real server', async function () {
    this.timeout(20000);
    const queues = new Map<string, Buffer[]>();
    for (const e of all) {
      const key = `${e.prog}:${e.proc}`;
      queues.set(key, [...(queues.get(key) ?? []), e.reply]);
    }
    const serve = () =>
      startFakeRpcServer((call, s) => {
        const next = queues.get(`${call.prog}:${call.proc}`)?.shift();
        if (!next) return;
        const reply = Buffer.from(next);
        reply.writeUInt32BE(call.xid, 0);
        s.reply(call, reply);
      });
    let nfs: FakeRpcServer | undefined;
    let mount: FakeRpcServer | undefined;
    try {
      nfs = await serve();
      mount = await serve();
      const client = await NfsClient.connect({ host: '127.0.0.1', export: fixture.exportPath, port: nfs.port, mountPort: mount.port, uid: 0, gid: 0, timeoutMs: 3000 });
      const summary = await runTrafficScript(client);
      await client.close();
      expect(summary).to.deep.equal(fixture.summary);
    } finally {
      await nfs?.close();
      await mount?.close();
    }
  });
});
