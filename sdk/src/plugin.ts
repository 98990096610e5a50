import type { DependencyContainer } from 'tsyringe';
import type { ZodType } from 'zod';
import type { MigrationHooks, TapOnly } from './hooks.js';
import type { Role } from './client/task-model.js';
import type { Logger } from './logger.js';
import type { PluginMetrics } from './metrics.js';
import type { HostInfo, VmInfo } from './model.js';
import type { Token } from './tokens.js';

/** The plugin API this SDK speaks. A plugin declares the one it was written for. */
export const API_VERSION = 1;

export type PluginRole = 'server' | 'agent';

export interface PluginMethodOptions {
  /**
   * Server role: the least user role that may call the method through the API
   * (`POST /v1/plugins/<plugin>/<method>`); `operator` by default. A read-only
   * method (a dry run, a report) says `viewer`.
   */
  role?: Role;
}

export interface PluginContext<C> {
  readonly name: string;
  /** Which process runs this instance: the management server or a host agent. */
  readonly role: PluginRole;
  /** For agents, the host's name. */
  readonly host?: string;
  /** The plugin's config slice, already validated by its schema. */
  readonly config: C;
  readonly logger: Logger;
  /**
   * Counters, gauges and histograms on this process's Prometheus endpoint
   * (the server's or this host's agent's /metrics).
   */
  readonly metrics: PluginMetrics;
  /** The plugin's own child container. */
  readonly container: DependencyContainer;
  readonly hooks: TapOnly<MigrationHooks>;
  /** A folder that belongs to this plugin on this host. */
  readonly stateDir: string;
  /** Contribute an implementation of a platform contract (hypervisor, storage, …). */
  provide<T>(token: Token<T>, value: T): void;
  /** Called when the platform stops, in reverse order of registration. */
  onDispose(fn: () => void | Promise<void>): void;
  /**
   * Agent role: facts about this host the plugin knows (CPU features, datastores
   * seen, networks), sent to the server with every heartbeat and found in
   * `HostInfo.plugins[<plugin name>]`. Called about once a second: cache.
   */
  reportFacts(provider: () => unknown): void;
  /**
   * A method of this plugin that others call; the payload and the result travel as
   * JSON, and the handler validates the payload itself.
   * Agent role: the same plugin's server-side instance calls it on this host with
   * `callAgent`. Server role: users call it through the API as
   * `POST /v1/plugins/<plugin>/<method>` with `{ "payload": … }` (the CLI's plugin
   * verbs do), needing `options.role`.
   */
  handle(method: string, handler: (payload: unknown) => Promise<unknown>, options?: PluginMethodOptions): void;
  /**
   * Server role: the site's hosts as the server last saw them, with the facts every
   * plugin reported (`HostInfo.plugins`). A copy: changing it changes nothing.
   */
  hosts(): Promise<HostInfo[]>;
  /** Server role: the site's VMs as the inventory records them (spec, host, state). A copy. */
  vms(): Promise<VmInfo[]>;
  /**
   * Server role: call `method` of this plugin on the agent of `host`. Rejects with
   * the handler's coded error, MOTUS_E_HOST_NOT_FOUND or MOTUS_E_AGENT_UNREACHABLE.
   */
  callAgent(host: string, method: string, payload?: unknown): Promise<unknown>;
}

export interface PluginDefinition<C = unknown> {
  readonly name: string;
  readonly version: string;
  readonly apiVersion: number;
  /** Tokens this plugin contributes with ctx.provide. */
  readonly provides: readonly Token<unknown>[];
  /** Names of plugins that must be loaded (and set up) before this one. */
  readonly dependsOn?: readonly string[];
  /** Roles this plugin runs in; both by default. */
  readonly roles?: readonly PluginRole[];
  readonly configSchema?: ZodType<C>;
  setup(ctx: PluginContext<C>): void | Promise<void>;
}

const PLUGIN_MARK = Symbol.for('motus:plugin');

/** Makes a plugin value. The kernel checks the manifest again at load time. */
export function definePlugin<C>(definition: PluginDefinition<C>): PluginDefinition<C> {
  return Object.freeze({ ...definition, [PLUGIN_MARK]: true });
}

export function isPluginDefinition(value: unknown): value is PluginDefinition<unknown> {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[PLUGIN_MARK] === true;
}
