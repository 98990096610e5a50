import { X509Certificate, createPrivateKey } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { MotusError } from '@motus/sdk';
import type { ServerTls } from '../http/http-server.js';
import { newPrivateKey } from './openssl.js';
import { privateDir, writePrivateFile } from '../kernel/private-files.js';
import { pemBlocks } from './pem-files.js';
import { certificateRequest, validBundle } from './site-ca.js';

/**
 * One host's TLS identity, kept in the agent's state folder (`pki/`, owner-only):
 * its private key (made here, never sent anywhere), the certificate the site CA
 * signed for it, and the CA bundle it trusts. The same certificate serves the
 * agent protocol (HTTPS, and the client side when the agent registers) and the
 * host's QEMU migration streams, for which it is also written in QEMU's
 * tls-creds-x509 layout under `pki/qemu/`.
 */
export class HostCredentials {
  private current: { key: string; cert: string; ca: string } | undefined;
  private pendingKey: string | undefined;
  private readonly dir: string;

  constructor(
    stateDir: string,
    readonly host: string,
    /** false: this host gets no QEMU migration credentials (site file `hosts[].migrationTls: false`). */
    private readonly forMigration: boolean,
  ) {
    this.dir = privateDir(join(stateDir, 'pki'));
    // Credentials of an earlier run are never reused: the agent enrolls afresh at every start.
    rmSync(join(this.dir, 'qemu'), { recursive: true, force: true });
  }

  /** A new key and its certificate request; the key waits until install() gets its certificate. */
  async request(): Promise<string> {
    this.pendingKey = newPrivateKey();
    return certificateRequest(this.pendingKey, this.host, this.dir);
  }

  /** Takes the signed certificate for the pending key and the CA bundle to trust from now on. */
  install(cert: string, ca: string): void {
    const key = this.pendingKey;
    if (!key) throw new MotusError('MOTUS_E_INVALID_REQUEST', `host ${this.host} has no pending certificate request to install a certificate for`);
    if (!validBundle(ca)) throw new MotusError('MOTUS_E_INVALID_REQUEST', 'ca: not a PEM bundle of CA certificates', { field: 'ca' });
    let x509: X509Certificate;
    try {
      x509 = new X509Certificate(cert);
    } catch {
      throw new MotusError('MOTUS_E_INVALID_REQUEST', 'cert: not a PEM certificate', { field: 'cert' });
    }
    if (!x509.checkPrivateKey(createPrivateKey(key))) throw new MotusError('MOTUS_E_INVALID_REQUEST', "cert: the certificate is not for this host's key", { field: 'cert' });
    if (!pemBlocks(ca).some((block) => x509.verify(new X509Certificate(block).publicKey))) {
      throw new MotusError('MOTUS_E_INVALID_REQUEST', 'cert: no CA of the bundle signed this certificate', { field: 'cert' });
    }
    if (!/(^|\n)CN=([^\n]*)/.exec(x509.subject)?.[2]?.split('+').includes(this.host)) {
      throw new MotusError('MOTUS_E_INVALID_REQUEST', `cert: the certificate is not for host ${this.host} (${x509.subject.replaceAll('\n', ', ')})`, { field: 'cert' });
    }
    this.pendingKey = undefined;
    this.current = { key, cert, ca };
    writePrivateFile(join(this.dir, 'key.pem'), key);
    writePrivateFile(join(this.dir, 'cert.pem'), cert);
    writePrivateFile(join(this.dir, 'ca-bundle.pem'), ca);
    if (this.forMigration) {
      // QEMU's layout: the same identity received (server) and sent (client) with.
      const qemu = privateDir(join(this.dir, 'qemu'));
      writePrivateFile(join(qemu, 'ca-cert.pem'), ca);
      for (const side of ['server', 'client']) {
        writePrivateFile(join(qemu, `${side}-cert.pem`), cert);
        writePrivateFile(join(qemu, `${side}-key.pem`), key);
      }
    }
  }

  /** Trusts a new CA bundle (a rotation's first step) before the new certificate comes. */
  trust(ca: string): void {
    if (!validBundle(ca)) throw new MotusError('MOTUS_E_INVALID_REQUEST', 'ca: not a PEM bundle of CA certificates', { field: 'ca' });
    if (!this.current) throw new MotusError('MOTUS_E_INVALID_REQUEST', `host ${this.host} has no credentials yet`);
    this.current = { ...this.current, ca };
    writePrivateFile(join(this.dir, 'ca-bundle.pem'), ca);
  }

  /** What the agent's HTTPS server answers with. */
  get serverTls(): ServerTls {
    if (!this.current) throw new MotusError('MOTUS_E_TLS', `host ${this.host} has no certificate yet`);
    return { ...this.current };
  }

  /** The folder QEMU reads, or why there is none. */
  migrationCredentials(): { dir?: string; reason?: string } {
    if (!this.forMigration) return { reason: `host ${this.host} is kept out of encrypted migration (site file: migrationTls: false)` };
    if (!this.current) return { reason: `host ${this.host} has not received its certificate from the site CA` };
    const notAfter = Date.parse(new X509Certificate(this.current.cert).validTo);
    if (notAfter < Date.now()) return { reason: `the certificate of host ${this.host} expired on ${new Date(notAfter).toISOString()}` };
    return { dir: join(this.dir, 'qemu') };
  }
}
