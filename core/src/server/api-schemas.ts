import { z } from 'zod';
import { MAX_NET_CAPTURE_MS } from './network-service.js';
import { MotusError } from '@motus/sdk';
import { tagSchema } from '../kernel/request-schemas.js';
import { ROLES } from './identity/roles.js';

const vmName = z.string().min(1).max(63);
const priority = z.enum(['high', 'normal']);

export const TaskRequestSchema = z.object({ vm: vmName, destination: z.string().min(1), priority: priority.optional(), ignoreRules: z.boolean().optional() }).strict();

const target = z.union([
  z.object({ vms: z.array(vmName).min(1, 'name at least one VM') }).strict(),
  z.object({ pattern: z.string().min(1).max(128).regex(/^[A-Za-z0-9._*?-]+$/, 'a glob of letters, digits, . _ - * ?') }).strict(),
  z.object({ tag: tagSchema }).strict(),
]);

export const VmTagsSchema = z.object({ tags: z.array(tagSchema).max(32) }).strict();

export const ScheduleRequestSchema = z
  .object({
    target,
    destination: z.string().min(1),
    priority: priority.optional(),
    at: z.string().min(1).optional(),
    cron: z.string().min(1).max(200).optional(),
    enabled: z.boolean().optional(),
  })
  .strict();

export const SchedulePatchSchema = ScheduleRequestSchema.partial().strict();

export const UserRequestSchema = z
  .object({
    name: z.string().regex(/^[a-z][a-z0-9._-]{0,31}$/, 'lowercase letters, digits, dot, dash, underscore; at most 32, starting with a letter'),
    role: z.enum(ROLES as [string, ...string[]]),
  })
  .strict();

export const NetCaptureRequestSchema = z
  .object({
    target: z.string().min(1).max(200),
    host: z.string().min(1).optional(),
    durationMs: z.number().int().min(1).max(MAX_NET_CAPTURE_MS),
  })
  .strict();

export const TokenRequestSchema = z.object({ user: z.string().min(1), label: z.string().max(100).optional() }).strict();

export interface AuditParams {
  vm?: string;
  user?: string;
  host?: string;
  since?: string;
  until?: string;
  limit?: number;
  format: 'json' | 'jsonl' | 'csv';
}

/** The audit route's query string; 400 naming the parameter at fault. */
export function parseAuditParams(query: URLSearchParams): AuditParams {
  const known = new Set(['vm', 'user', 'host', 'since', 'until', 'limit', 'format']);
  for (const key of query.keys()) {
    if (!known.has(key)) throw new MotusError('MOTUS_E_INVALID_REQUEST', `${key}: unknown audit filter (vm, user, host, since, until, limit, format)`, { field: key });
  }
  const out: AuditParams = { format: 'json' };
  for (const key of ['vm', 'user', 'host'] as const) {
    const value = query.get(key);
    if (value !== null) out[key] = value;
  }
  for (const key of ['since', 'until'] as const) {
    const value = query.get(key);
    if (value === null) continue;
    const time = Date.parse(value);
    if (Number.isNaN(time)) throw new MotusError('MOTUS_E_INVALID_REQUEST', `${key}: '${value}' is not a time (ISO 8601, e.g. 2026-01-31T22:00:00Z)`, { field: key });
    out[key] = new Date(time).toISOString();
  }
  const limit = query.get('limit');
  if (limit !== null) {
    if (!/^\d+$/.test(limit) || Number(limit) < 1) throw new MotusError('MOTUS_E_INVALID_REQUEST', `limit: '${limit}' is not a positive whole number`, { field: 'limit' });
    out.limit = Number(limit);
  }
  const format = query.get('format') ?? 'json';
  if (format !== 'json' && format !== 'jsonl' && format !== 'csv') throw new MotusError('MOTUS_E_INVALID_REQUEST', `format: '${format}' is not json, jsonl or csv`, { field: 'format' });
  out.format = format;
  return out;
}
