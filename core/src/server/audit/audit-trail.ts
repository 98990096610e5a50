import { createHash } from 'node:crypto';
import type Database from 'better-sqlite3';
import { Subject } from 'rxjs';
import { MotusError, redact, type AuditQuery, type AuditRecord, type AuditVerification } from '@motus/sdk';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS audit (
  seq INTEGER PRIMARY KEY,
  at TEXT NOT NULL,
  user TEXT NOT NULL,
  action TEXT NOT NULL,
  outcome TEXT NOT NULL,
  vm TEXT,
  source TEXT,
  destination TEXT,
  task TEXT,
  downtime_ms INTEGER,
  detail TEXT,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_vm ON audit (vm, seq);
CREATE INDEX IF NOT EXISTS audit_user ON audit (user, seq);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
CREATE TABLE IF NOT EXISTS audit_head (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  seq INTEGER NOT NULL,
  hash TEXT NOT NULL
);
`;

export const GENESIS_HASH = '0'.repeat(64);

export type AuditEntry = Omit<AuditRecord, 'seq' | 'at' | 'prevHash' | 'hash'>;

interface Row {
  seq: number;
  at: string;
  user: string;
  action: string;
  outcome: string;
  vm: string | null;
  source: string | null;
  destination: string | null;
  task: string | null;
  downtime_ms: number | null;
  detail: string | null;
  prev_hash: string;
  hash: string;
}

/**
 * The append-only audit trail. Each record carries the hash of the one before it,
 * and its own hash covers its content and that link, so an edited, deleted or
 * inserted row breaks the chain at a record verify() can name. The head (last seq
 * and hash) is kept apart, so cutting records off the end shows too — unless the
 * same hand also rewrites the head, which a chain kept in the same file cannot
 * prevent; export the trail (or its head hash) elsewhere for that.
 */
export class AuditTrail {
  private readonly appended = new Subject<AuditRecord>();
  /** Records as they are appended (the API's event stream, the console). */
  readonly records$ = this.appended.asObservable();
  private readonly stmts;
  private head: { seq: number; hash: string };
  private readonly appendTx;

  constructor(db: Database.Database) {
    db.exec(SCHEMA);
    this.stmts = {
      insert: db.prepare(
        'INSERT INTO audit (seq, at, user, action, outcome, vm, source, destination, task, downtime_ms, detail, prev_hash, hash) VALUES (@seq, @at, @user, @action, @outcome, @vm, @source, @destination, @task, @downtime_ms, @detail, @prev_hash, @hash)',
      ),
      setHead: db.prepare('INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash'),
      head: db.prepare('SELECT seq, hash FROM audit_head WHERE id = 1'),
      all: db.prepare('SELECT * FROM audit ORDER BY seq'),
    };
    const stored = this.stmts.head.get() as { seq: number; hash: string } | undefined;
    this.head = stored ?? { seq: 0, hash: GENESIS_HASH };
    this.appendTx = db.transaction((row: Row) => {
      this.stmts.insert.run(row);
      this.stmts.setHead.run(row.seq, row.hash);
    });
    this.db = db;
  }

  private readonly db: Database.Database;

  append(entry: AuditEntry): AuditRecord {
    // Secrets never enter the trail: a record cannot be edited afterwards without breaking the chain.
    const record = { seq: this.head.seq + 1, at: new Date().toISOString(), ...stripUndefined(redact(entry)), prevHash: this.head.hash } as AuditRecord;
    record.hash = recordHash(record);
    this.appendTx(toRow(record));
    this.head = { seq: record.seq, hash: record.hash };
    this.appended.next(record);
    return record;
  }

  query(filter: AuditQuery = {}): AuditRecord[] {
    const where: string[] = [];
    const args: Record<string, unknown> = {};
    if (filter.vm !== undefined) {
      where.push('vm = @vm');
      args.vm = filter.vm;
    }
    if (filter.user !== undefined) {
      where.push('user = @user');
      args.user = filter.user;
    }
    if (filter.host !== undefined) {
      where.push('(source = @host OR destination = @host)');
      args.host = filter.host;
    }
    if (filter.since !== undefined) {
      where.push('at >= @since');
      args.since = filter.since;
    }
    if (filter.until !== undefined) {
      where.push('at <= @until');
      args.until = filter.until;
    }
    const limit = filter.limit ?? 100_000;
    const sql = `SELECT * FROM audit ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq LIMIT ${Math.max(1, Math.floor(limit))}`;
    return (this.db.prepare(sql).all(args) as Row[]).map(fromRow);
  }

  /** Walks the whole chain; throws MOTUS_E_AUDIT_TAMPERED naming the first record that does not verify. */
  verify(): AuditVerification {
    let expected = 1;
    let prev = GENESIS_HASH;
    for (const row of this.stmts.all.iterate() as IterableIterator<Row>) {
      const record = fromRow(row);
      if (record.seq !== expected) {
        throw tampered(expected, record.seq > expected ? `record ${expected} is missing (deleted)${record.seq > expected + 1 ? ` up to ${record.seq - 1}` : ''}` : `record ${record.seq} is out of order`);
      }
      if (record.prevHash !== prev) throw tampered(record.seq, `record ${record.seq} does not link to record ${record.seq - 1} (one of them was changed or replaced)`);
      if (recordHash(record) !== record.hash) throw tampered(record.seq, `record ${record.seq} was edited: its content does not match its hash`);
      prev = record.hash;
      expected += 1;
    }
    const head = (this.stmts.head.get() as { seq: number; hash: string } | undefined) ?? { seq: 0, hash: GENESIS_HASH };
    if (head.seq !== expected - 1 || head.hash !== prev) {
      throw tampered(expected, head.seq > expected - 1 ? `records ${expected} to ${head.seq} are missing (deleted from the end)` : `the trail's head (record ${head.seq}) does not match its last record ${expected - 1}`);
    }
    return { ok: true, records: expected - 1, headHash: prev };
  }
}

function tampered(seq: number, message: string): MotusError {
  return new MotusError('MOTUS_E_AUDIT_TAMPERED', `audit trail does not verify: ${message}`, { record: seq });
}

/** SHA-256 over the previous hash and the record's fields in a fixed order. */
export function recordHash(record: AuditRecord): string {
  const body = [
    record.seq,
    record.at,
    record.user,
    record.action,
    record.outcome,
    record.vm ?? null,
    record.source ?? null,
    record.destination ?? null,
    record.task ?? null,
    record.downtimeMs ?? null,
    record.detail === undefined ? null : canonical(record.detail),
  ];
  return createHash('sha256').update(record.prevHash).update('\n').update(JSON.stringify(body)).digest('hex');
}

function canonical(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
}

function stripUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

function toRow(r: AuditRecord): Row {
  return {
    seq: r.seq,
    at: r.at,
    user: r.user,
    action: r.action,
    outcome: r.outcome,
    vm: r.vm ?? null,
    source: r.source ?? null,
    destination: r.destination ?? null,
    task: r.task ?? null,
    downtime_ms: r.downtimeMs ?? null,
    detail: r.detail === undefined ? null : canonical(r.detail),
    prev_hash: r.prevHash,
    hash: r.hash,
  };
}

function fromRow(row: Row): AuditRecord {
  const record: AuditRecord = { seq: row.seq, at: row.at, user: row.user, action: row.action, outcome: row.outcome, prevHash: row.prev_hash, hash: row.hash };
  if (row.vm !== null) record.vm = row.vm;
  if (row.source !== null) record.source = row.source;
  if (row.destination !== null) record.destination = row.destination;
  if (row.task !== null) record.task = row.task;
  if (row.downtime_ms !== null) record.downtimeMs = row.downtime_ms;
  if (row.detail !== null) record.detail = JSON.parse(row.detail) as Record<string, unknown>;
  return record;
}
