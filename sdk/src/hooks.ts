import type { AsyncParallelHook, AsyncSeriesBailHook, AsyncSeriesHook } from 'tapable';
import type { DependencyContainer } from 'tsyringe';
import type { MotusError } from './errors.js';
import type { HostInfo, MigrationPhase, VmInfo } from './model.js';

/** What every lifecycle hook of one migration receives. */
export interface MigrationHookContext {
  readonly migrationId: string;
  readonly vm: VmInfo;
  readonly source: HostInfo;
  readonly destination: HostInfo;
  /** The migration's own child container; disposed when the migration ends. */
  readonly container: DependencyContainer;
  /** Aborted when the migration is cancelled or has failed. */
  readonly signal: AbortSignal;
}

/** A plugin's refusal of a migration, with a reason a person can act on. */
export interface Veto {
  plugin: string;
  code: string;
  reason: string;
  data?: Record<string, unknown>;
}

/**
 * The extension points of the migration lifecycle, declared once. "Will" is a
 * hook (may veto or act); "did" is an event on a stream.
 */
export interface MigrationHooks {
  /** Bail with a Veto to refuse the migration before anything starts. */
  readonly validate: AsyncSeriesBailHook<[MigrationHookContext], Veto | undefined>;
  /** Independent destination preparation (storage attach, switch ports). */
  readonly prepareDestination: AsyncParallelHook<[MigrationHookContext]>;
  /** Runs once the source has stopped and before the destination may run (lease handover). */
  readonly switchover: AsyncSeriesHook<[MigrationHookContext]>;
  /** After the destination runs: announce and confirm its network location. */
  readonly announce: AsyncSeriesHook<[MigrationHookContext]>;
  /** Source-side release after success. */
  readonly cleanup: AsyncSeriesHook<[MigrationHookContext]>;
  /** The migration failed in `phase`; undo what the plugin prepared. */
  readonly failed: AsyncSeriesHook<[MigrationHookContext, MotusError, MigrationPhase]>;
}

type TapMethods = 'tap' | 'tapAsync' | 'tapPromise';

/** The view plugins get: they may tap, only the kernel calls. */
export type TapOnly<H> = { readonly [K in keyof H]: Pick<H[K], Extract<keyof H[K], TapMethods>> };
