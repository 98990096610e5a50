import type Database from 'better-sqlite3';
import type { TaskInfo } from '@motus/sdk';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS tasks (
  id TEXT PRIMARY KEY,
  seq INTEGER NOT NULL UNIQUE,
  state TEXT NOT NULL,
  info TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_state ON tasks (state, seq);
`;

/** Tasks in SQLite, so the queue and the running set survive a restart of the server. */
export class TaskStore {
  private readonly stmts;

  constructor(db: Database.Database) {
    db.exec(SCHEMA);
    this.stmts = {
      put: db.prepare('INSERT INTO tasks (id, seq, state, info) VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET state = excluded.state, info = excluded.info'),
      get: db.prepare('SELECT seq, info FROM tasks WHERE id = ?'),
      inState: db.prepare('SELECT seq, info FROM tasks WHERE state = ? ORDER BY seq'),
      list: db.prepare('SELECT seq, info FROM tasks ORDER BY seq DESC LIMIT ?'),
      maxSeq: db.prepare('SELECT coalesce(max(seq), 0) AS seq FROM tasks'),
    };
  }

  nextSeq(): number {
    return (this.stmts.maxSeq.get() as { seq: number }).seq + 1;
  }

  put(seq: number, task: TaskInfo): void {
    this.stmts.put.run(task.id, seq, task.state, JSON.stringify(task));
  }

  get(id: string): { seq: number; task: TaskInfo } | undefined {
    const row = this.stmts.get.get(id) as { seq: number; info: string } | undefined;
    return row && { seq: row.seq, task: JSON.parse(row.info) as TaskInfo };
  }

  inState(state: TaskInfo['state']): Array<{ seq: number; task: TaskInfo }> {
    return (this.stmts.inState.all(state) as Array<{ seq: number; info: string }>).map((row) => ({ seq: row.seq, task: JSON.parse(row.info) as TaskInfo }));
  }

  /** Newest first. */
  list(limit = 1000): TaskInfo[] {
    return (this.stmts.list.all(limit) as Array<{ info: string }>).map((row) => JSON.parse(row.info) as TaskInfo);
  }
}
