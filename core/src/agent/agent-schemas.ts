import { z } from 'zod';
import { VmSpecSchema } from '../kernel/request-schemas.js';

/**
 * Bodies of the agent protocol. The server is the only caller, but the agent
 * still checks every field: a bad order is refused (400 naming the field) before
 * it reaches QEMU.
 */
const migrationId = z.string().max(128);

/** The hypervisor's own tuning (MigrationTuning): an object of named settings, which the driver checks. */
const TuningSchema = z.record(z.string().regex(/^[A-Za-z][A-Za-z0-9-]{0,63}$/, 'a tuning setting name'), z.unknown());

export const StartVmOrderSchema = z.object({ spec: VmSpecSchema }).strict();

export const IncomingOrderSchema = z
  .object({
    spec: VmSpecSchema,
    migrationId,
    /** What both ends must agree on before the stream (multifd, postcopy). */
    tuning: TuningSchema.optional(),
    /** Receive the stream over TLS with this host's migration credentials. */
    tls: z.boolean().optional(),
  })
  .strict();


export const MigrateOrderSchema = z
  .object({
    uri: z.string().max(1024).regex(/^[a-z][a-z0-9+.-]*:\S+$/, 'a migration URI such as tcp:127.0.0.1:4444'),
    tuning: TuningSchema.default({}),
    migrationId,
    /** Send over TLS, checking that the destination's certificate names this host. */
    tls: z.object({ peer: z.string().min(1).max(63) }).strict().optional(),
  })
  .strict();

export const PluginCallSchema = z.object({ payload: z.unknown().optional() }).strict();

/** Orders on a VM named by the path carry no fields. */
export const EmptyOrderSchema = z.object({}).strict();

const pem = z.string().min(1).max(32_768);

export const RenewCredentialsSchema = z.object({ ca: pem }).strict();

export const InstallCredentialsSchema = z.object({ cert: pem, ca: pem }).strict();

export const TuneOrderSchema = z.object({ tuning: TuningSchema.default({}) }).strict();

export const LinkProbeSinkOrderSchema = z.object({ lifetimeMs: z.number().int().positive().max(60_000) }).strict();

export const LinkProbeOrderSchema = z
  .object({
    sink: z.object({ host: z.string().min(1).max(253), port: z.number().int().min(1).max(65_535) }).strict(),
    durationMs: z.number().int().positive().max(10_000),
    maxBytes: z.number().int().positive().max(2 ** 40),
    timeoutMs: z.number().int().positive().max(60_000),
  })
  .strict();

export const FirstHeartbeatOrderSchema = z.object({ timeoutMs: z.number().int().nonnegative().max(600_000).optional() }).strict();
