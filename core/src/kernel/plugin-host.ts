import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { DependencyContainer } from 'tsyringe';
import {
  API_VERSION,
  HypervisorDriverToken,
  MotusError,
  NetworkProviderToken,
  StorageProviderToken,
  isPluginDefinition,
  registerSecretsIn,
  tokenId,
  type HostInfo,
  type Logger,
  type MigrationHooks,
  type PluginContext,
  type PluginDefinition,
  type PluginRole,
  type Role,
  type Token,
  type VmInfo,
} from '@motus/sdk';
import { MetricsRegistry } from '../metrics/metrics-registry.js';
import { tapOnly } from './migration-hooks.js';

/** A plugin to load: by package name (site files) or as a value (embedders, tests). */
export type PluginSource =
  | { package: string; config?: Record<string, unknown> }
  | { definition: PluginDefinition<unknown>; config?: Record<string, unknown> };

/** Tokens at most one plugin may provide on a platform. */
const SINGLE_PROVIDER: ReadonlySet<symbol> = new Set([HypervisorDriverToken]);

/**
 * Contracts only agents consume. A plugin that also runs on the server (for its
 * validate tap, say) declares them in `provides` but has nothing to provide there.
 */
const AGENT_CONTRACTS: ReadonlySet<symbol> = new Set([HypervisorDriverToken, StorageProviderToken, NetworkProviderToken]);

interface LoadedPlugin {
  definition: PluginDefinition<unknown>;
  config: unknown;
  container: DependencyContainer;
  disposers: Array<() => void | Promise<void>>;
}

export interface PluginHostOptions {
  role: PluginRole;
  host?: string;
  root: DependencyContainer;
  hooks: MigrationHooks;
  logger: Logger;
  stateDir: string;
  /** The process's metrics registry; each plugin gets a checked view of it as ctx.metrics (a private one when absent). */
  metrics?: MetricsRegistry;
  /** Server role: reaches a plugin's handler on a host's agent. */
  callAgent?: (host: string, plugin: string, method: string, payload: unknown) => Promise<unknown>;
  /** Server role: the site's hosts and VMs, for the plugins' read-only view. */
  site?: { hosts(): Promise<HostInfo[]> | HostInfo[]; vms(): Promise<VmInfo[]> | VmInfo[] };
}

type Handler = (payload: unknown) => Promise<unknown>;
interface Method {
  handler: Handler;
  /** Server role: who may call it through the API. */
  role: Role;
}

const FACTS_TIMEOUT_MS = 1_000;

/**
 * Loads the plugins a site names, checks each manifest, validates each config slice
 * with the plugin's own schema, orders them by dependsOn and runs their setup in a
 * child container of their own. Any problem stops the start with a coded error that
 * names the plugin.
 */
export class PluginHost {
  private readonly loaded: LoadedPlugin[] = [];
  private readonly contributed = new Map<symbol, Array<{ plugin: string; value: unknown }>>();
  private readonly factProviders = new Map<string, () => unknown>();
  private readonly handlers = new Map<string, Map<string, Method>>();

  private readonly metrics: MetricsRegistry;

  constructor(private readonly options: PluginHostOptions) {
    this.metrics = options.metrics ?? new MetricsRegistry();
  }

  async load(sources: readonly PluginSource[]): Promise<void> {
    const resolved: Array<{ definition: PluginDefinition<unknown>; rawConfig: Record<string, unknown>; label: string }> = [];
    for (const source of sources) {
      const label = 'package' in source ? source.package : source.definition?.name ?? '(unnamed)';
      const definition = 'package' in source ? await importPlugin(source.package) : source.definition;
      checkManifest(definition, label);
      resolved.push({ definition, rawConfig: source.config ?? {}, label });
    }
    const byName = new Map<string, (typeof resolved)[number]>();
    for (const entry of resolved) {
      if (byName.has(entry.definition.name)) {
        throw new MotusError('MOTUS_E_PLUGIN_CONFLICT', `plugin ${entry.definition.name} is listed twice`, { plugin: entry.definition.name });
      }
      byName.set(entry.definition.name, entry);
    }
    for (const entry of orderByDependencies([...byName.values()].map((e) => e.definition))) {
      const { rawConfig } = byName.get(entry.name)!;
      if (entry.roles && !entry.roles.includes(this.options.role)) continue;
      await this.setUp(entry, validateConfig(entry, rawConfig));
    }
  }

  /** Every value contributed for `token`, in load order; [] when none. */
  contributions<T>(token: Token<T>): T[] {
    return (this.contributed.get(token) ?? []).map((c) => c.value as T);
  }

  single<T>(token: Token<T>): T | undefined {
    return this.contributions(token)[0];
  }

  /** Every plugin's facts about this host; a provider that fails or hangs reports `{ error }`. */
  async facts(): Promise<Record<string, unknown>> {
    const entries = await Promise.all(
      [...this.factProviders].map(async ([plugin, provider]) => {
        try {
          return [plugin, await withDeadline(Promise.resolve(provider()), FACTS_TIMEOUT_MS)] as const;
        } catch (err) {
          return [plugin, { error: (err as Error).message }] as const;
        }
      }),
    );
    return Object.fromEntries(entries);
  }

  /**
   * A plugin's method (the agent protocol's plugin route on agents, the API's on the
   * server), with the role the API asks of its callers.
   */
  method(plugin: string, method: string): Method {
    const found = this.handlers.get(plugin)?.get(method);
    if (!found) {
      const where = this.options.role === 'agent' ? `host ${this.options.host ?? '?'}` : 'the server';
      throw new MotusError('MOTUS_E_NOT_FOUND', `plugin ${plugin} has no method '${method}' on ${where}`, { plugin, method });
    }
    return found;
  }

  /** Every method the plugins contribute, with the role each asks of its callers. */
  methods(): Array<{ plugin: string; method: string; role: Role }> {
    return [...this.handlers].flatMap(([plugin, methods]) => [...methods].map(([method, { role }]) => ({ plugin, method, role })));
  }

  /** Runs a plugin's method. */
  async invoke(plugin: string, method: string, payload: unknown): Promise<unknown> {
    return this.method(plugin, method).handler(payload);
  }

  /** Names of the loaded plugins whose manifest declares `token` in `provides` (on the server too, for agent contracts). */
  providersOf(token: Token<unknown>): string[] {
    return this.loaded.filter((p) => p.definition.provides.includes(token)).map((p) => p.definition.name);
  }

  pluginNames(): string[] {
    return this.loaded.map((p) => p.definition.name);
  }

  /** Runs every plugin's disposers, last loaded first; keeps going past failures and reports them. */
  async dispose(): Promise<void> {
    const failures: string[] = [];
    for (const plugin of [...this.loaded].reverse()) {
      for (const dispose of [...plugin.disposers].reverse()) {
        try {
          await dispose();
        } catch (err) {
          failures.push(`${plugin.definition.name}: ${(err as Error).message}`);
        }
      }
      await plugin.container.dispose();
    }
    this.loaded.length = 0;
    this.contributed.clear();
    this.factProviders.clear();
    this.handlers.clear();
    if (failures.length > 0) this.options.logger.error('plugin dispose failed', { failures });
  }

  private site(): NonNullable<PluginHostOptions['site']> {
    const site = this.options.site;
    if (!site) throw new MotusError('MOTUS_E_INTERNAL', 'this platform gives its plugins no view of the site');
    return site;
  }

  private requireRole(plugin: string, role: PluginRole, what: string): void {
    if (this.options.role !== role) {
      throw new MotusError('MOTUS_E_PLUGIN_INVALID', `plugin ${plugin} called ${what}() in the ${this.options.role} role; it belongs to the ${role} role`, { plugin });
    }
  }

  private async setUp(definition: PluginDefinition<unknown>, config: unknown): Promise<void> {
    const { root, role, host, hooks, logger, stateDir } = this.options;
    const container = root.createChildContainer();
    // A plugin's secrets (CHAP secrets, passwords) are scrubbed from every log line and event from now on.
    registerSecretsIn(config);
    const plugin: LoadedPlugin = { definition, config, container, disposers: [] };
    const provided = new Set<symbol>();
    const folder = join(stateDir, 'plugins', definition.name.replace(/[^a-zA-Z0-9._-]+/g, '_'));
    mkdirSync(folder, { recursive: true });
    const ctx: PluginContext<unknown> = {
      name: definition.name,
      role,
      ...(host === undefined ? {} : { host }),
      config,
      logger: logger.child({ plugin: definition.name }),
      metrics: this.metrics.forPlugin(definition.name),
      container,
      hooks: tapOnly(hooks),
      stateDir: folder,
      provide: <T>(token: Token<T>, value: T) => {
        if (!definition.provides.includes(token)) {
          throw new MotusError('MOTUS_E_PLUGIN_INVALID', `plugin ${definition.name} provides ${tokenId(token)} without declaring it in 'provides'`, {
            plugin: definition.name,
            token: tokenId(token),
          });
        }
        const existing = this.contributed.get(token) ?? [];
        if (SINGLE_PROVIDER.has(token) && existing.length > 0) {
          throw new MotusError(
            'MOTUS_E_PLUGIN_CONFLICT',
            `plugins ${existing[0]!.plugin} and ${definition.name} both provide ${tokenId(token)}; keep one of them in the site file`,
            { plugin: definition.name, other: existing[0]!.plugin, token: tokenId(token) },
          );
        }
        existing.push({ plugin: definition.name, value });
        this.contributed.set(token, existing);
        provided.add(token);
        container.register(token, { useValue: value });
        root.register(token, { useValue: value });
      },
      onDispose: (fn) => {
        plugin.disposers.push(fn);
      },
      reportFacts: (provider) => {
        this.requireRole(definition.name, 'agent', 'reportFacts');
        this.factProviders.set(definition.name, provider);
      },
      handle: (method, handler, options) => {
        if (!/^[a-z][a-z0-9-]*$/.test(method)) {
          throw new MotusError('MOTUS_E_PLUGIN_INVALID', `plugin ${definition.name} handles '${method}': a method name is lowercase letters, digits and dashes`, { plugin: definition.name, method });
        }
        const methods = this.handlers.get(definition.name) ?? new Map<string, Method>();
        if (methods.has(method)) {
          throw new MotusError('MOTUS_E_PLUGIN_INVALID', `plugin ${definition.name} handles '${method}' twice`, { plugin: definition.name, method });
        }
        methods.set(method, { handler, role: options?.role ?? 'operator' });
        this.handlers.set(definition.name, methods);
      },
      hosts: async () => {
        this.requireRole(definition.name, 'server', 'hosts');
        return structuredClone(await this.site().hosts());
      },
      vms: async () => {
        this.requireRole(definition.name, 'server', 'vms');
        return structuredClone(await this.site().vms());
      },
      callAgent: async (targetHost, method, payload) => {
        this.requireRole(definition.name, 'server', 'callAgent');
        const call = this.options.callAgent;
        if (!call) throw new MotusError('MOTUS_E_INTERNAL', 'this platform cannot reach its agents');
        return call(targetHost, definition.name, method, payload ?? {});
      },
    };
    this.loaded.push(plugin);
    try {
      await definition.setup(ctx);
    } catch (err) {
      if (err instanceof MotusError && err.code.startsWith('MOTUS_E_PLUGIN_')) throw err;
      throw new MotusError('MOTUS_E_PLUGIN_SETUP', `plugin ${definition.name} failed to set up: ${(err as Error).message}`, { plugin: definition.name }, { cause: err });
    }
    const missing = definition.provides.filter((token) => !provided.has(token) && !(role === 'server' && AGENT_CONTRACTS.has(token)));
    if (missing.length > 0) {
      throw new MotusError('MOTUS_E_PLUGIN_SETUP', `plugin ${definition.name} declares ${missing.map(tokenId).join(', ')} but did not provide it`, {
        plugin: definition.name,
        missing: missing.map(tokenId),
      });
    }
    logger.debug('plugin loaded', { plugin: definition.name, version: definition.version });
  }
}

async function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

async function importPlugin(packageName: string): Promise<PluginDefinition<unknown>> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import(packageName)) as Record<string, unknown>;
  } catch (err) {
    const code = (err as { code?: string }).code;
    const notFound = code === 'ERR_MODULE_NOT_FOUND' && String((err as Error).message).includes(`Cannot find package '${packageName}'`);
    throw new MotusError(
      notFound ? 'MOTUS_E_PLUGIN_NOT_FOUND' : 'MOTUS_E_PLUGIN_INVALID',
      notFound
        ? `plugin ${packageName} is not installed (npm install ${packageName}, or remove it from the site file)`
        : `plugin ${packageName} failed to load: ${(err as Error).message}`,
      { plugin: packageName },
      { cause: err },
    );
  }
  const definition = mod.default ?? mod.plugin;
  if (!isPluginDefinition(definition)) {
    throw new MotusError('MOTUS_E_PLUGIN_INVALID', `plugin ${packageName} does not export a definePlugin() value as its default export`, { plugin: packageName });
  }
  return definition;
}

function checkManifest(definition: PluginDefinition<unknown>, label: string): void {
  const problems: string[] = [];
  if (!isPluginDefinition(definition)) problems.push('it was not made with definePlugin()');
  else {
    if (typeof definition.name !== 'string' || definition.name.length === 0) problems.push('name is missing');
    if (typeof definition.version !== 'string' || !/^\d+\.\d+\.\d+/.test(definition.version)) problems.push('version is not semver');
    if (!Array.isArray(definition.provides)) problems.push("'provides' is not a list of tokens");
    if (typeof definition.setup !== 'function') problems.push('setup is not a function');
  }
  if (problems.length > 0) {
    throw new MotusError('MOTUS_E_PLUGIN_INVALID', `plugin ${label} has an invalid manifest: ${problems.join('; ')}`, { plugin: label, problems });
  }
  if (definition.apiVersion !== API_VERSION) {
    throw new MotusError(
      'MOTUS_E_PLUGIN_API_MISMATCH',
      `plugin ${definition.name} ${definition.version} was written for plugin API ${String(definition.apiVersion)}, this Motus speaks ${API_VERSION}`,
      { plugin: definition.name, apiVersion: definition.apiVersion, expected: API_VERSION },
    );
  }
}

function validateConfig(definition: PluginDefinition<unknown>, raw: Record<string, unknown>): unknown {
  if (!definition.configSchema) {
    if (Object.keys(raw).length > 0) {
      throw new MotusError('MOTUS_E_PLUGIN_CONFIG', `plugin ${definition.name} takes no config, but the site gives it ${Object.keys(raw).join(', ')}`, {
        plugin: definition.name,
      });
    }
    return {};
  }
  const result = definition.configSchema.safeParse(raw);
  if (result.success) return result.data;
  const problems = result.error.issues.map((i) => `${i.path.map(String).join('.') || '(config)'}: ${i.message}`);
  throw new MotusError('MOTUS_E_PLUGIN_CONFIG', `plugin ${definition.name} config is not valid: ${problems.join('; ')}`, {
    plugin: definition.name,
    problems,
  });
}

/** Topological order by dependsOn; a missing dependency or a cycle is a coded error. */
function orderByDependencies(definitions: PluginDefinition<unknown>[]): PluginDefinition<unknown>[] {
  const byName = new Map(definitions.map((d) => [d.name, d]));
  const ordered: PluginDefinition<unknown>[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (definition: PluginDefinition<unknown>, chain: string[]): void => {
    const mark = state.get(definition.name);
    if (mark === 'done') return;
    if (mark === 'visiting') {
      throw new MotusError('MOTUS_E_PLUGIN_CONFLICT', `plugins depend on each other in a cycle: ${[...chain, definition.name].join(' -> ')}`, {
        plugin: definition.name,
      });
    }
    state.set(definition.name, 'visiting');
    for (const dependency of definition.dependsOn ?? []) {
      const target = byName.get(dependency);
      if (!target) {
        throw new MotusError('MOTUS_E_PLUGIN_CONFLICT', `plugin ${definition.name} needs plugin ${dependency}, which the site does not load`, {
          plugin: definition.name,
          missing: dependency,
        });
      }
      visit(target, [...chain, definition.name]);
    }
    state.set(definition.name, 'done');
    ordered.push(definition);
  };
  for (const definition of definitions) visit(definition, []);
  return ordered;
}
