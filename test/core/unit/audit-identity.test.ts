import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { isMotusError } from '@motus/sdk';
import { AuditTrail, IdentityStore, allows, hashToken, toCsv, toJsonLines } from '@motus/core';
import { tempDir } from '../../support/index.js';

function expectTampered(trail: AuditTrail, record: number, message: RegExp): void {
  try {
    trail.verify();
    expect.fail('verify passed');
  } catch (err) {
    expect(isMotusError(err, 'MOTUS_E_AUDIT_TAMPERED'), String(err)).to.equal(true);
    expect((err as { data: { record: number } }).data.record).to.equal(record);
    expect((err as Error).message).to.match(message);
  }
}

describe('audit trail (hash chain in SQLite)', () => {
  let dir: { path: string; remove(): void };
  let path: string;

  beforeEach(() => {
    dir = tempDir('audit');
    path = join(dir.path, 'motus.db');
    const db = new Database(path);
    const trail = new AuditTrail(db);
    for (let i = 1; i <= 6; i++) {
      trail.append({ user: i % 2 ? 'alice' : 'bob', action: 'migration.completed', outcome: 'completed', vm: `vm${i % 3}`, source: 'host-a', destination: 'host-b', task: `m-${i}`, downtimeMs: 10 + i, detail: { n: i, note: 'a,"quoted" value' } });
    }
    db.close();
  });

  afterEach(() => dir.remove());

  it('chains each record to the one before and verifies the whole trail, across reopenings', () => {
    const db = new Database(path);
    const trail = new AuditTrail(db);
    const result = trail.verify();
    expect(result.records).to.equal(6);
    const records = trail.query();
    expect(records[0]!.prevHash).to.equal('0'.repeat(64));
    records.slice(1).forEach((r, i) => expect(r.prevHash).to.equal(records[i]!.hash));
    expect(result.headHash).to.equal(records.at(-1)!.hash);
    trail.append({ user: 'carol', action: 'schedule.create', outcome: 'created' });
    expect(trail.verify().records).to.equal(7);
    db.close();
  });

  it('filters by VM, user, host and time range', () => {
    const db = new Database(path);
    const trail = new AuditTrail(db);
    expect(trail.query({ vm: 'vm1' }).map((r) => r.seq)).to.deep.equal([1, 4]);
    expect(trail.query({ user: 'bob' }).map((r) => r.seq)).to.deep.equal([2, 4, 6]);
    expect(trail.query({ host: 'host-b' })).to.have.length(6);
    expect(trail.query({ host: 'host-z' })).to.have.length(0);
    const third = trail.query()[2]!.at;
    expect(trail.query({ since: third }).every((r) => r.at >= third)).to.equal(true);
    expect(trail.query({ until: '2000-01-01T00:00:00.000Z' })).to.have.length(0);
    expect(trail.query({ limit: 2 }).map((r) => r.seq)).to.deep.equal([1, 2]);
    db.close();
  });

  it('exports JSON Lines and CSV that carry every field', () => {
    const db = new Database(path);
    const records = new AuditTrail(db).query();
    const lines = toJsonLines(records).trimEnd().split('\n').map((l) => JSON.parse(l) as { seq: number; hash: string });
    expect(lines.map((l) => l.seq)).to.deep.equal([1, 2, 3, 4, 5, 6]);
    const csv = toCsv(records).trimEnd().split('\r\n');
    expect(csv[0]).to.equal('seq,at,user,action,outcome,vm,source,destination,task,downtimeMs,detail,prevHash,hash');
    expect(csv).to.have.length(7);
    expect(csv[1]).to.include('"{""n"":1,""note"":""a,\\""quoted\\"" value""}"');
    expect(csv[1]!.endsWith(records[0]!.hash)).to.equal(true);
    db.close();
  });

  it('fails verify and names the record after a row is edited in the database file', () => {
    const raw = new Database(path);
    raw.prepare("UPDATE audit SET user = 'mallory' WHERE seq = 3").run();
    raw.close();
    const db = new Database(path);
    expectTampered(new AuditTrail(db), 3, /record 3 was edited/);
    db.close();
  });

  it('fails verify when an edited row also got a recomputed hash: the next record no longer links', () => {
    const raw = new Database(path);
    raw.prepare("UPDATE audit SET outcome = 'failed', hash = 'f00d' WHERE seq = 4").run();
    raw.close();
    const db = new Database(path);
    expectTampered(new AuditTrail(db), 4, /record 4/);
    db.close();
  });

  it('fails verify and names the record after a row is deleted, in the middle or at the end', () => {
    let raw = new Database(path);
    raw.prepare('DELETE FROM audit WHERE seq = 2').run();
    raw.close();
    let db = new Database(path);
    expectTampered(new AuditTrail(db), 2, /record 2 is missing/);
    db.close();
    const dir2 = tempDir('audit-tail');
    try {
      const tailPath = join(dir2.path, 'motus.db');
      const trailDb = new Database(tailPath);
      const trail = new AuditTrail(trailDb);
      for (let i = 0; i < 4; i++) trail.append({ user: 'u', action: 'a', outcome: 'o' });
      trailDb.close();
      raw = new Database(tailPath);
      raw.prepare('DELETE FROM audit WHERE seq = 4').run();
      raw.close();
      db = new Database(tailPath);
      expectTampered(new AuditTrail(db), 4, /records 4 to 4 are missing/);
      db.close();
    } finally {
      dir2.remove();
    }
  });
});

describe('identities and roles', () => {
  let dir: { path: string; remove(): void };
  let db: Database.Database;
  let store: IdentityStore;

  beforeEach(() => {
    dir = tempDir('identity');
    db = new Database(join(dir.path, 'motus.db'));
    store = new IdentityStore(db);
  });

  afterEach(() => {
    db.close();
    dir.remove();
  });

  it('orders roles viewer < operator < admin', () => {
    expect(allows('admin', 'operator')).to.equal(true);
    expect(allows('operator', 'operator')).to.equal(true);
    expect(allows('operator', 'admin')).to.equal(false);
    expect(allows('viewer', 'operator')).to.equal(false);
    expect(allows('viewer', 'viewer')).to.equal(true);
  });

  it('makes the state folder token the first admin, once, and keeps it revoked once revoked', () => {
    store.bootstrap('state-token');
    store.bootstrap('state-token');
    expect(store.users().map((u) => [u.name, u.role])).to.deep.equal([['admin', 'admin']]);
    expect(store.tokens()).to.have.length(1);
    expect(store.authenticate('state-token')).to.include({ user: 'admin', role: 'admin' });
    store.revokeToken(store.tokens()[0]!.id);
    store.bootstrap('state-token');
    expect(store.authenticate('state-token')).to.equal(undefined);
  });

  it('stores tokens only as SHA-256 hashes and authenticates them until revoked', () => {
    store.bootstrap('boot');
    store.addUser('vera', 'viewer', 'admin');
    const token = store.createToken('vera', 'laptop');
    expect(token.token).to.match(/^mt_[A-Za-z0-9_-]{43}$/);
    const file = readFileSync(join(dir.path, 'motus.db'));
    const wal = (() => {
      try {
        return readFileSync(join(dir.path, 'motus.db-wal'));
      } catch {
        return Buffer.alloc(0);
      }
    })();
    expect(Buffer.concat([file, wal]).includes(token.token)).to.equal(false);
    expect(db.prepare('SELECT hash FROM tokens WHERE id = ?').get(token.id)).to.deep.equal({ hash: hashToken(token.token) });
    expect(store.authenticate(token.token)).to.deep.equal({ user: 'vera', role: 'viewer', tokenId: token.id });
    expect(store.authenticate(token.token + 'x')).to.equal(undefined);
    expect(store.authenticate('')).to.equal(undefined);
    store.revokeToken(token.id);
    expect(store.authenticate(token.token)).to.equal(undefined);
    expect(store.token(token.id)!.revokedAt).to.be.a('string');
  });

  it('refuses a second user of a name, removes users with their tokens, and keeps the last admin', () => {
    store.bootstrap('boot');
    store.addUser('olga', 'operator', 'admin');
    const token = store.createToken('olga', '');
    try {
      store.addUser('olga', 'viewer', 'admin');
      expect.fail('duplicate');
    } catch (err) {
      expect(isMotusError(err, 'MOTUS_E_USER_EXISTS')).to.equal(true);
    }
    store.removeUser('olga');
    expect(store.authenticate(token.token)).to.equal(undefined);
    try {
      store.removeUser('admin');
      expect.fail('last admin');
    } catch (err) {
      expect((err as Error).message).to.include('last admin');
    }
    try {
      store.createToken('ghost', '');
      expect.fail('no user');
    } catch (err) {
      expect(isMotusError(err, 'MOTUS_E_NOT_FOUND')).to.equal(true);
    }
  });
});
