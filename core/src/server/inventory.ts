import Database from 'better-sqlite3';
import type { HostInfo, MigrationEvent, MigrationSummary, VmInfo } from '@motus/sdk';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS hosts (
  name TEXT PRIMARY KEY,
  info TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS vms (
  name TEXT PRIMARY KEY,
  host TEXT NOT NULL,
  info TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS migrations (
  id TEXT PRIMARY KEY,
  vm TEXT NOT NULL,
  requested_at TEXT NOT NULL,
  summary TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS migrations_vm ON migrations (vm, requested_at);
CREATE TABLE IF NOT EXISTS migration_events (
  migration_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  event TEXT NOT NULL,
  PRIMARY KEY (migration_id, seq)
);
`;

/**
 * The server's inventory in SQLite: hosts, VMs, migrations and every migration
 * event, so the history survives a restart of the server.
 */
export class Inventory {
  private readonly db: Database.Database;
  private readonly stmts;

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(SCHEMA);
    this.stmts = {
      putHost: this.db.prepare('INSERT INTO hosts (name, info) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET info = excluded.info'),
      hosts: this.db.prepare('SELECT info FROM hosts ORDER BY name'),
      putVm: this.db.prepare('INSERT INTO vms (name, host, info) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET host = excluded.host, info = excluded.info'),
      vm: this.db.prepare('SELECT info FROM vms WHERE name = ?'),
      vms: this.db.prepare('SELECT info FROM vms ORDER BY name'),
      deleteVm: this.db.prepare('DELETE FROM vms WHERE name = ?'),
      putMigration: this.db.prepare(
        'INSERT INTO migrations (id, vm, requested_at, summary) VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET summary = excluded.summary',
      ),
      migration: this.db.prepare('SELECT summary FROM migrations WHERE id = ?'),
      migrations: this.db.prepare('SELECT summary FROM migrations ORDER BY requested_at DESC, id DESC LIMIT ?'),
      addEvent: this.db.prepare('INSERT INTO migration_events (migration_id, seq, event) VALUES (?, ?, ?)'),
      events: this.db.prepare('SELECT event FROM migration_events WHERE migration_id = ? ORDER BY seq'),
    };
  }

  /** The same SQLite file holds the tasks, schedules, identities and audit trail, each with its own tables. */
  get database(): Database.Database {
    return this.db;
  }

  putHost(host: HostInfo): void {
    this.stmts.putHost.run(host.name, JSON.stringify(host));
  }

  hosts(): HostInfo[] {
    return this.stmts.hosts.all().map((row) => JSON.parse((row as { info: string }).info) as HostInfo);
  }

  putVm(vm: VmInfo): void {
    this.stmts.putVm.run(vm.name, vm.host, JSON.stringify(vm));
  }

  vm(name: string): VmInfo | undefined {
    const row = this.stmts.vm.get(name) as { info: string } | undefined;
    return row ? (JSON.parse(row.info) as VmInfo) : undefined;
  }

  vms(): VmInfo[] {
    return this.stmts.vms.all().map((row) => JSON.parse((row as { info: string }).info) as VmInfo);
  }

  deleteVm(name: string): void {
    this.stmts.deleteVm.run(name);
  }

  putMigration(summary: MigrationSummary): void {
    this.stmts.putMigration.run(summary.id, summary.vm, summary.requestedAt, JSON.stringify(summary));
  }

  migration(id: string): MigrationSummary | undefined {
    const row = this.stmts.migration.get(id) as { summary: string } | undefined;
    return row ? (JSON.parse(row.summary) as MigrationSummary) : undefined;
  }

  migrations(limit = 1000): MigrationSummary[] {
    return this.stmts.migrations.all(limit).map((row) => JSON.parse((row as { summary: string }).summary) as MigrationSummary);
  }

  addEvent(event: MigrationEvent): void {
    this.stmts.addEvent.run(event.migrationId, event.seq, JSON.stringify(event));
  }

  events(migrationId: string): MigrationEvent[] {
    return this.stmts.events.all(migrationId).map((row) => JSON.parse((row as { event: string }).event) as MigrationEvent);
  }

  close(): void {
    this.db.close();
  }
}
