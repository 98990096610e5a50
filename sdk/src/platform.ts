import type { Observable } from 'rxjs';
import type { HostEvent, MigrationEvent, VmEvent } from './events.js';
import type { HostInfo, MigrationRequest, MigrationSummary, VmInfo, VmSpec } from './model.js';

/** One migration in flight: its events (replayed from the start) and its outcome. */
export interface MigrationHandle {
  readonly id: string;
  readonly events$: Observable<MigrationEvent>;
  /** Resolves with the final summary whatever the outcome; rejects only if the platform stops. */
  readonly done: Promise<MigrationSummary>;
  cancel(by?: string): Promise<void>;
}

/** What an embedder (createPlatform) and the daemon's server role both offer. */
export interface Platform {
  readonly migrations$: Observable<MigrationEvent>;
  readonly hosts$: Observable<HostEvent>;
  readonly vms$: Observable<VmEvent>;
  hosts(): Promise<HostInfo[]>;
  vms(): Promise<VmInfo[]>;
  startVm(spec: VmSpec, host: string): Promise<VmInfo>;
  stopVm(name: string): Promise<void>;
  /**
   * Queues the migration as a task under the site's concurrency limits. When it can
   * start at once it is validated at once (rejecting with a coded MotusError,
   * nothing started) and runs in the background; otherwise the handle's events
   * start when it does.
   */
  migrate(request: MigrationRequest): Promise<MigrationHandle>;
  migrations(): Promise<MigrationSummary[]>;
  migration(id: string): Promise<MigrationSummary>;
  stop(): Promise<void>;
}

/** How to build an in-process platform: a server and its hosts in this process. */
export interface PlatformOptions {
  /** Path of a site file, or the site object itself. */
  site: string | Record<string, unknown>;
  /** Folder for the platform's state (database, per-host run folders). */
  stateDir: string;
}

/**
 * Creates an in-process platform. The kernel lives in @motus/core, which depends on
 * this SDK; it is loaded at run time so the SDK has no compile-time dependency on it.
 */
export async function createPlatform(options: PlatformOptions): Promise<Platform> {
  const specifier = '@motus/core';
  const core = (await import(specifier)) as { createEmbeddedPlatform(options: PlatformOptions): Promise<Platform> };
  return core.createEmbeddedPlatform(options);
}
