import type Database from 'better-sqlite3';
import type { ScheduleInfo } from '@motus/sdk';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS schedules (
  id TEXT PRIMARY KEY,
  info TEXT NOT NULL
);
`;

export class ScheduleStore {
  private readonly stmts;

  constructor(db: Database.Database) {
    db.exec(SCHEMA);
    this.stmts = {
      put: db.prepare('INSERT INTO schedules (id, info) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET info = excluded.info'),
      get: db.prepare('SELECT info FROM schedules WHERE id = ?'),
      all: db.prepare('SELECT info FROM schedules ORDER BY id'),
      remove: db.prepare('DELETE FROM schedules WHERE id = ?'),
    };
  }

  put(schedule: ScheduleInfo): void {
    this.stmts.put.run(schedule.id, JSON.stringify(schedule));
  }

  get(id: string): ScheduleInfo | undefined {
    const row = this.stmts.get.get(id) as { info: string } | undefined;
    return row && (JSON.parse(row.info) as ScheduleInfo);
  }

  all(): ScheduleInfo[] {
    return (this.stmts.all.all() as Array<{ info: string }>).map((row) => JSON.parse(row.info) as ScheduleInfo);
  }

  remove(id: string): void {
    this.stmts.remove.run(id);
  }
}
