import { AsyncParallelHook, AsyncSeriesBailHook, AsyncSeriesHook } from 'tapable';
import type { MigrationHookContext, MigrationHooks, MigrationPhase, MotusError, TapOnly, Veto } from '@motus/sdk';

/** The lifecycle hooks, created once per platform and frozen: the kernel calls, plugins tap. */
export function createMigrationHooks(): MigrationHooks {
  return Object.freeze({
    validate: new AsyncSeriesBailHook<[MigrationHookContext], Veto | undefined>(['context']),
    prepareDestination: new AsyncParallelHook<[MigrationHookContext]>(['context']),
    switchover: new AsyncSeriesHook<[MigrationHookContext]>(['context']),
    announce: new AsyncSeriesHook<[MigrationHookContext]>(['context']),
    cleanup: new AsyncSeriesHook<[MigrationHookContext]>(['context']),
    failed: new AsyncSeriesHook<[MigrationHookContext, MotusError, MigrationPhase]>(['context', 'error', 'phase']),
  });
}

/** A view of the hooks that exposes only the tap methods, so a plugin cannot call them. */
export function tapOnly(hooks: MigrationHooks): TapOnly<MigrationHooks> {
  const view: Record<string, unknown> = {};
  for (const [name, hook] of Object.entries(hooks)) {
    view[name] = Object.freeze({
      tap: hook.tap.bind(hook),
      tapAsync: hook.tapAsync.bind(hook),
      tapPromise: hook.tapPromise.bind(hook),
    });
  }
  return Object.freeze(view) as unknown as TapOnly<MigrationHooks>;
}
