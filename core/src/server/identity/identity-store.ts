import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type Database from 'better-sqlite3';
import { MotusError, registerSecret, type NewToken, type Role, type TokenInfo, type UserInfo } from '@motus/sdk';
import type { Principal } from './roles.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS users (
  name TEXT PRIMARY KEY,
  role TEXT NOT NULL,
  created_at TEXT NOT NULL,
  created_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
  id TEXT PRIMARY KEY,
  user TEXT NOT NULL,
  hash TEXT NOT NULL UNIQUE,
  label TEXT NOT NULL,
  created_at TEXT NOT NULL,
  revoked_at TEXT
);
`;

export const BOOTSTRAP_ADMIN = 'admin';

/**
 * Users and their API tokens. A token is 32 random bytes; only its SHA-256 is
 * stored. A slow KDF (scrypt) protects guessable passwords, not 256-bit random
 * secrets, and a plain hash lets a token be looked up by an index in one step.
 */
export class IdentityStore {
  private readonly stmts;

  constructor(private readonly db: Database.Database) {
    db.exec(SCHEMA);
    this.stmts = {
      user: db.prepare('SELECT name, role, created_at, created_by FROM users WHERE name = ?'),
      users: db.prepare('SELECT name, role, created_at, created_by FROM users ORDER BY name'),
      addUser: db.prepare('INSERT INTO users (name, role, created_at, created_by) VALUES (?, ?, ?, ?)'),
      removeUser: db.prepare('DELETE FROM users WHERE name = ?'),
      revokeAllOf: db.prepare('UPDATE tokens SET revoked_at = ? WHERE user = ? AND revoked_at IS NULL'),
      byHash: db.prepare('SELECT t.id, t.user, t.hash, u.role FROM tokens t JOIN users u ON u.name = t.user WHERE t.hash = ? AND t.revoked_at IS NULL'),
      addToken: db.prepare('INSERT INTO tokens (id, user, hash, label, created_at) VALUES (?, ?, ?, ?, ?)'),
      token: db.prepare('SELECT id, user, label, created_at, revoked_at FROM tokens WHERE id = ?'),
      tokens: db.prepare('SELECT id, user, label, created_at, revoked_at FROM tokens ORDER BY created_at, id'),
      revoke: db.prepare('UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL'),
      admins: db.prepare("SELECT count(*) AS n FROM users WHERE role = 'admin'"),
    };
  }

  /**
   * The first admin, whose token is the one motusd keeps in its state folder
   * (client.json): a fresh site is usable at once, and the token can be revoked
   * like any other once other admins exist.
   */
  bootstrap(token: string): void {
    const users = (this.db.prepare('SELECT count(*) AS n FROM users').get() as { n: number }).n;
    const known = this.db.prepare('SELECT id FROM tokens WHERE hash = ?').get(hashToken(token)) !== undefined;
    this.db.transaction(() => {
      if (users === 0) this.stmts.addUser.run(BOOTSTRAP_ADMIN, 'admin', now(), 'motusd');
      // A token revoked once stays revoked: its hash is known, so it is not added again.
      if (!known && this.user(BOOTSTRAP_ADMIN)?.role === 'admin') {
        this.stmts.addToken.run(newId('t'), BOOTSTRAP_ADMIN, hashToken(token), 'state folder (client.json)', now());
      }
    })();
  }

  authenticate(token: string): Principal | undefined {
    if (token.length === 0 || token.length > 512) return undefined;
    const hash = hashToken(token);
    const row = this.stmts.byHash.get(hash) as { id: string; user: string; hash: string; role: Role } | undefined;
    if (!row || !timingSafeEqual(Buffer.from(row.hash), Buffer.from(hash))) return undefined;
    return { user: row.user, role: row.role, tokenId: row.id };
  }

  user(name: string): UserInfo | undefined {
    const row = this.stmts.user.get(name) as UserRow | undefined;
    return row && userInfo(row);
  }

  users(): UserInfo[] {
    return (this.stmts.users.all() as UserRow[]).map(userInfo);
  }

  addUser(name: string, role: Role, by: string): UserInfo {
    if (this.user(name)) throw new MotusError('MOTUS_E_USER_EXISTS', `a user named ${name} already exists`, { user: name });
    this.stmts.addUser.run(name, role, now(), by);
    return this.user(name)!;
  }

  /** Removes a user and revokes every token of theirs; the last admin cannot be removed. */
  removeUser(name: string): void {
    const user = this.user(name);
    if (!user) throw new MotusError('MOTUS_E_NOT_FOUND', `no user named ${name}`, { user: name });
    if (user.role === 'admin' && (this.stmts.admins.get() as { n: number }).n <= 1) {
      throw new MotusError('MOTUS_E_INVALID_REQUEST', `${name} is the last admin; add another admin first`, { user: name });
    }
    this.db.transaction(() => {
      this.stmts.revokeAllOf.run(now(), name);
      this.stmts.removeUser.run(name);
    })();
  }

  createToken(user: string, label: string): NewToken {
    if (!this.user(user)) throw new MotusError('MOTUS_E_NOT_FOUND', `no user named ${user}`, { user });
    const token = `mt_${randomBytes(32).toString('base64url')}`;
    registerSecret(token);
    const id = newId('t');
    this.stmts.addToken.run(id, user, hashToken(token), label, now());
    return { ...this.token(id)!, token };
  }

  token(id: string): TokenInfo | undefined {
    const row = this.stmts.token.get(id) as TokenRow | undefined;
    return row && tokenInfo(row);
  }

  tokens(user?: string): TokenInfo[] {
    return (this.stmts.tokens.all() as TokenRow[]).map(tokenInfo).filter((t) => user === undefined || t.user === user);
  }

  revokeToken(id: string): TokenInfo {
    const token = this.token(id);
    if (!token) throw new MotusError('MOTUS_E_NOT_FOUND', `no token ${id}`, { token: id });
    this.stmts.revoke.run(now(), id);
    return this.token(id)!;
  }
}

interface UserRow {
  name: string;
  role: Role;
  created_at: string;
  created_by: string;
}

interface TokenRow {
  id: string;
  user: string;
  label: string;
  created_at: string;
  revoked_at: string | null;
}

function userInfo(row: UserRow): UserInfo {
  return { name: row.name, role: row.role, createdAt: row.created_at, createdBy: row.created_by };
}

function tokenInfo(row: TokenRow): TokenInfo {
  return { id: row.id, user: row.user, label: row.label, createdAt: row.created_at, ...(row.revoked_at ? { revokedAt: row.revoked_at } : {}) };
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

function newId(prefix: string): string {
  return `${prefix}-${randomBytes(5).toString('hex')}`;
}

function now(): string {
  return new Date().toISOString();
}
