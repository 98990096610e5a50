import { hostname } from 'node:os';
import { join } from 'node:path';
import type { CaInfo, Logger } from '@motus/sdk';
import type { AgentClientTls } from '../agent/http-host-link.js';
import type { ServerTls } from '../http/http-server.js';
import { writePrivateFile } from '../kernel/private-files.js';
import { SiteCa } from './site-ca.js';

/** The server's certificate is named like this (CN) with role `server` (OU): agents take orders only from it. */
export const SERVER_IDENTITY = 'motusd';

/** A host's side of a rotation, driven by the server over the agent protocol. */
export interface RenewableHost {
  readonly name: string;
  /** Trust `ca` from now on and answer a certificate request for a new key. */
  renewCredentials(ca: string): Promise<string>;
  /** Use `cert` (for the key of the last request) and trust `ca`. */
  installCredentials(cert: string, ca: string): Promise<void>;
}

export interface RotationResult {
  ca: CaInfo;
  renewed: string[];
  failed: Array<{ host: string; error: string }>;
}

/**
 * The server's TLS: the site CA, the server's own certificate (for HTTPS and as
 * the client certificate agents require), enrolment of hosts and rotation. The
 * generation counts every change, so connections to agents are remade with the
 * new material.
 */
export class ServerTlsManager {
  private material: { generation: number; key: string; cert: string; ca: string };
  private readonly changed: Array<(tls: ServerTls) => void> = [];

  private constructor(
    readonly ca: SiteCa,
    private readonly stateDir: string,
    private readonly names: string[],
    private readonly logger: Logger,
    own: { key: string; cert: string },
  ) {
    this.material = { generation: 1, ...own, ca: ca.bundle };
    this.writeBundle();
  }

  /** Opens (or creates) the CA in `stateDir/pki` and issues the server's certificate for `names` (addresses clients use). */
  static async start(stateDir: string, siteName: string, listenHost: string, logger: Logger): Promise<ServerTlsManager> {
    const ca = await SiteCa.open(join(stateDir, 'pki'), siteName, logger);
    const names = [listenHost, '127.0.0.1', '::1', 'localhost', hostname()];
    const own = await ca.issueWithKey({ name: SERVER_IDENTITY, role: 'server', altNames: names });
    return new ServerTlsManager(ca, stateDir, names, logger, own);
  }

  /** The CA bundle clients trust (also in `ca.pem` of the state folder). */
  get bundle(): string {
    return this.material.ca;
  }

  get serverTls(): ServerTls {
    const { key, cert, ca } = this.material;
    return { key, cert, ca };
  }

  /** For links to agents: read at each call, so a rotation reaches them. */
  readonly agentClientTls = (): AgentClientTls => ({ ...this.material });

  /** Called with the new server credentials after a rotation (the API server swaps them in). */
  onChange(listener: (tls: ServerTls) => void): void {
    this.changed.push(listener);
  }

  /** Signs a host's certificate request: the host's name, reached at `altNames` (its agent and migration addresses). */
  async enroll(host: string, csr: string, altNames: string[]): Promise<{ cert: string; ca: string }> {
    const cert = await this.ca.sign(csr, { name: host, role: 'host', altNames });
    this.logger.info('host certificate issued', { host, generation: this.ca.generation });
    return { cert, ca: this.material.ca };
  }

  /**
   * A new CA. Hosts first learn to trust it (while the server still presents its
   * old certificate, which they trust), then get new certificates, and only then
   * does the server switch to its own new certificate. A host that could not be
   * renewed keeps working until the next rotation drops its CA, or until its agent
   * restarts and enrolls again.
   */
  async rotate(hosts: RenewableHost[]): Promise<RotationResult> {
    const info = await this.ca.rotate();
    this.material = { ...this.material, generation: this.material.generation + 1, ca: this.ca.bundle };
    const renewed: string[] = [];
    const failed: RotationResult['failed'] = [];
    for (const host of hosts) {
      try {
        const csr = await host.renewCredentials(this.material.ca);
        const { cert } = await this.enroll(host.name, csr, this.hostNames(host.name));
        await host.installCredentials(cert, this.material.ca);
        renewed.push(host.name);
      } catch (err) {
        failed.push({ host: host.name, error: (err as Error).message });
      }
    }
    const own = await this.ca.issueWithKey({ name: SERVER_IDENTITY, role: 'server', altNames: this.names });
    this.material = { generation: this.material.generation + 1, ...own, ca: this.ca.bundle };
    this.writeBundle();
    for (const listener of this.changed) listener(this.serverTls);
    this.logger.info('site CA rotated', { generation: info.generation, renewed, failed: failed.map((f) => f.host) });
    return { ca: info, renewed, failed };
  }

  /** Names a host's certificate carries: set by the daemon from the site file. */
  hostNames: (host: string) => string[] = () => [];

  private writeBundle(): void {
    writePrivateFile(join(this.stateDir, 'ca.pem'), this.material.ca);
  }
}
