/**
 * Reading sysfs and udev's /dev links without ever throwing: a host's view is
 * assembled from thousands of small files that the kernel may remove at any
 * moment (a port going down takes its rport and devices with it), and one bad
 * file must make one port or LUN unusable, not the whole discovery fail. Every
 * read answers a value or the reason it has none.
 *
 * Synchronous on purpose: sysfs attributes are generated in memory by the
 * kernel, and Node's synchronous calls are several times faster than promise
 * round trips for 100 000 tiny reads (see the discovery benchmark); discovery
 * yields to the event loop between remote ports instead.
 */
import { lstatSync, readFileSync, readdirSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';

export type Read<T> = { ok: true; value: T } | { ok: false; reason: string };

const ok = <T>(value: T): Read<T> => ({ ok: true, value });
const fail = <T>(reason: string): Read<T> => ({ ok: false, reason });

function why(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'missing';
  if (code === 'EACCES' || code === 'EPERM') return 'unreadable (permission denied)';
  if (code === 'ENOTDIR') return 'missing (a parent is not a folder)';
  if (code === 'EISDIR') return 'is a folder, not an attribute';
  if (code === 'ELOOP') return 'symlink loop';
  return code ? `unreadable (${code})` : `unreadable (${(err as Error).message})`;
}

/** A sysfs attribute's text without its trailing newline; empty or oversized files are reasons. */
export function readAttr(path: string): Read<string> {
  let text: string;
  try {
    text = readFileSync(path, 'latin1');
  } catch (err) {
    return fail(`${path}: ${why(err)}`);
  }
  // sysfs attributes are at most a page; anything larger is not what the kernel writes.
  if (text.length > 4096) return fail(`${path}: ${text.length} bytes, not a sysfs attribute`);
  const value = text.replace(/\n$/, '');
  if (value.trim() === '') return fail(`${path}: empty`);
  if (/[\0-\x08\x0e-\x1f\x7f-\xff]/.test(value)) return fail(`${path}: holds binary garbage`);
  return ok(value.trim());
}

/** Entries of a folder, sorted; missing folders are reasons. */
export function listDir(path: string): Read<string[]> {
  try {
    return ok(readdirSync(path).sort());
  } catch (err) {
    return fail(`${path}: ${why(err)}`);
  }
}

/** Entries of a folder, or none when it is missing (an optional folder like holders/). */
export function listOptional(path: string): string[] {
  const r = listDir(path);
  return r.ok ? r.value : [];
}

/** Where a symlink points, resolved against its folder; dangling links are reasons. */
export function followLink(path: string): Read<string> {
  let target: string;
  try {
    target = readlinkSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return fail(code === 'EINVAL' ? `${path}: not a symlink` : `${path}: ${why(err)}`);
  }
  const full = resolve(dirname(path), target);
  try {
    statSync(full);
  } catch (err) {
    return fail(`${path} -> ${target}: dangling (${why(err)})`);
  }
  return ok(full);
}

/** The name a symlink points to (`../../sdb` → `sdb`), when the target exists. */
export function linkName(path: string): Read<string> {
  const r = followLink(path);
  return r.ok ? ok(basename(r.value)) : r;
}

/** Whether a path names something (a symlink is followed); the reason when not. */
export function exists(path: string): Read<'block' | 'file' | 'other'> {
  try {
    const s = statSync(path);
    return ok(s.isBlockDevice() ? 'block' : s.isFile() ? 'file' : 'other');
  } catch (err) {
    try {
      if (lstatSync(path).isSymbolicLink()) return fail(`${path}: dangling symlink`);
    } catch {
      // Not even a link.
    }
    return fail(`${path}: ${why(err)}`);
  }
}

/** The canonical path of a sysfs object (class entries are symlinks into /sys/devices). */
export function realPath(path: string): Read<string> {
  try {
    return ok(realpathSync.native(path));
  } catch (err) {
    return fail(`${path}: ${why(err)}`);
  }
}
