import { X509Certificate, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { MotusError, type CaInfo, type CertificateInfo, type Logger } from '@motus/sdk';
import { newPrivateKey, openssl, OPENSSL_CONFIG, subject } from './openssl.js';
import { privateDir, writePrivateFile } from '../kernel/private-files.js';
import { pemBlocks, scratchDir } from './pem-files.js';

/** The two kinds of identity the site CA vouches for; a certificate's OU carries it. */
export type PeerRole = 'server' | 'host';

/** Who a certificate is for: its CN, its role (OU), and the names (DNS or IP) a client may reach it by. */
export interface CertificateRequestFor {
  name: string;
  role: PeerRole;
  altNames: string[];
}

const CA_DAYS = 3650;
/** A leaf lives a little over a year (the CA/Browser limit); agents get a fresh one at every start and rotation. */
const LEAF_DAYS = 397;
const NAME = /^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$/;

export function describeCertificate(pem: string): CertificateInfo {
  const cert = new X509Certificate(pem);
  return { subject: cert.subject.replaceAll('\n', ', '), fingerprint256: cert.fingerprint256, notBefore: new Date(cert.validFrom).toISOString(), notAfter: new Date(cert.validTo).toISOString() };
}

/** subjectAltName entries for names a peer is reached by: IP addresses as IP:, the rest as DNS:. Wildcard binds are skipped. */
export function altNamesOf(names: string[]): string[] {
  const out = new Set<string>();
  for (const raw of names) {
    const name = raw.replace(/^\[|\]$/g, '');
    if (name === '' || name === '0.0.0.0' || name === '::') continue;
    if (isIP(name)) out.add(`IP:${name}`);
    else if (NAME.test(name)) out.add(`DNS:${name}`);
    else throw new MotusError('MOTUS_E_CA', `'${raw}' cannot be a certificate name (letters, digits, dots and dashes, or an IP address)`, { name: raw });
  }
  return [...out];
}

/**
 * The site's certificate authority, kept in the server's state folder
 * (`pki/ca/`, owner-only). Created on the first start; `rotate()` makes a new CA
 * and keeps the previous certificate in the trust bundle until the next rotation.
 * It signs the server's certificate and each host's (from the host's CSR: a
 * host's private key never leaves the host).
 */
export class SiteCa {
  private constructor(
    private readonly dir: string,
    private readonly siteName: string,
    private state: { generation: number; cert: string; previous?: string },
  ) {}

  /** Opens the CA in `pkiDir`, creating it (key, certificate, generation 1) the first time. */
  static async open(pkiDir: string, siteName: string, logger: Logger): Promise<SiteCa> {
    const dir = privateDir(join(pkiDir, 'ca'));
    const certPath = join(dir, 'ca-cert.pem');
    if (!existsSync(certPath) || !existsSync(join(dir, 'ca-key.pem'))) {
      const ca = new SiteCa(dir, siteName, { generation: 0, cert: '' });
      await ca.createCa(1);
      logger.info('site CA created', { generation: 1, fingerprint256: ca.info().fingerprint256, dir });
      return ca;
    }
    try {
      const generation = Number(readFileSync(join(dir, 'generation'), 'utf8').trim()) || 1;
      const cert = readFileSync(certPath, 'utf8');
      const previousPath = join(dir, 'previous-ca-cert.pem');
      describeCertificate(cert);
      return new SiteCa(dir, siteName, { generation, cert, ...(existsSync(previousPath) ? { previous: readFileSync(previousPath, 'utf8') } : {}) });
    } catch (err) {
      throw new MotusError('MOTUS_E_CA', `the site CA in ${dir} cannot be read: ${(err as Error).message}`, { dir });
    }
  }

  get generation(): number {
    return this.state.generation;
  }

  /** What peers trust: the current CA and, after a rotation, the previous one. */
  get bundle(): string {
    return this.state.cert + (this.state.previous ?? '');
  }

  info(): CaInfo {
    return {
      generation: this.state.generation,
      ...describeCertificate(this.state.cert),
      ...(this.state.previous ? { previous: describeCertificate(this.state.previous) } : {}),
    };
  }

  /** Signs a CSR (PEM) for `who`. The subject and names are the CA's choice, not the request's. */
  async sign(csrPem: string, who: CertificateRequestFor): Promise<string> {
    if (!/^-----BEGIN CERTIFICATE REQUEST-----[\s\S]+-----END CERTIFICATE REQUEST-----\s*$/.test(csrPem) || csrPem.length > 16_384) {
      throw new MotusError('MOTUS_E_INVALID_REQUEST', 'csr: not a PEM certificate request', { field: 'csr' });
    }
    if (!NAME.test(who.name)) throw new MotusError('MOTUS_E_INVALID_REQUEST', `name: '${who.name}' cannot be a certificate name`, { field: 'name' });
    const work = scratchDir(this.dir);
    try {
      writeFileSync(join(work, 'req.pem'), csrPem, { mode: 0o600 });
      const san = [`DNS:${who.name}`, ...altNamesOf(who.altNames)].filter((v, i, all) => all.indexOf(v) === i).join(',');
      writeFileSync(join(work, 'openssl.cnf'), OPENSSL_CONFIG.replace('{{SAN}}', san), { mode: 0o600 });
      await openssl(
        [
          'x509', '-req', '-in', 'req.pem',
          '-CA', join(this.dir, 'ca-cert.pem'), '-CAkey', join(this.dir, 'ca-key.pem'),
          '-set_serial', `0x${randomBytes(16).toString('hex')}`,
          '-days', String(LEAF_DAYS), '-sha256',
          '-extfile', 'openssl.cnf', '-extensions', 'leaf_ext',
          '-subj', subject([['O', `Motus site ${this.siteName}`], ['OU', who.role], ['CN', who.name]]),
          '-out', 'cert.pem',
        ],
        work,
      );
      return readFileSync(join(work, 'cert.pem'), 'utf8');
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }

  /** A key and a certificate made here (the server's own). */
  async issueWithKey(who: CertificateRequestFor): Promise<{ key: string; cert: string }> {
    const key = newPrivateKey();
    return { key, cert: await this.sign(await certificateRequest(key, who.name, this.dir), who) };
  }

  /** A new CA key and certificate (next generation); the old certificate stays trusted until the next rotation. */
  async rotate(): Promise<CaInfo> {
    const previous = this.state.cert;
    await this.createCa(this.state.generation + 1);
    writePrivateFile(join(this.dir, 'previous-ca-cert.pem'), previous);
    this.state.previous = previous;
    return this.info();
  }

  private async createCa(generation: number): Promise<void> {
    const work = scratchDir(this.dir);
    try {
      writeFileSync(join(work, 'key.pem'), newPrivateKey(), { mode: 0o600 });
      writeFileSync(join(work, 'openssl.cnf'), OPENSSL_CONFIG.replace('{{SAN}}', 'DNS:unused'), { mode: 0o600 });
      await openssl(
        [
          'req', '-config', 'openssl.cnf', '-x509', '-new', '-key', 'key.pem',
          '-subj', subject([['O', `Motus site ${this.siteName}`], ['CN', `Motus site CA ${generation}`]]),
          '-days', String(CA_DAYS), '-sha256', '-extensions', 'ca_ext',
          '-set_serial', `0x${randomBytes(16).toString('hex')}`,
          '-out', 'cert.pem',
        ],
        work,
      );
      const cert = readFileSync(join(work, 'cert.pem'), 'utf8');
      writePrivateFile(join(this.dir, 'ca-key.pem'), readFileSync(join(work, 'key.pem'), 'utf8'));
      writePrivateFile(join(this.dir, 'ca-cert.pem'), cert);
      writePrivateFile(join(this.dir, 'generation'), `${generation}\n`);
      this.state = { ...this.state, generation, cert };
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }
}

/** A certificate request (PEM) for `key`; the CA sets the real subject when it signs. */
export async function certificateRequest(key: string, name: string, scratchParent: string): Promise<string> {
  const work = scratchDir(scratchParent);
  try {
    writeFileSync(join(work, 'key.pem'), key, { mode: 0o600 });
    writeFileSync(join(work, 'openssl.cnf'), OPENSSL_CONFIG.replace('{{SAN}}', 'DNS:unused'), { mode: 0o600 });
    await openssl(['req', '-config', 'openssl.cnf', '-new', '-key', 'key.pem', '-subj', subject([['CN', name]]), '-out', 'req.pem'], work);
    return readFileSync(join(work, 'req.pem'), 'utf8');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** True when every certificate of `bundle` parses (a CA bundle handed over the wire). */
export function validBundle(bundle: string): boolean {
  const blocks = pemBlocks(bundle);
  if (blocks.length === 0 || blocks.length > 4) return false;
  try {
    blocks.forEach((b) => new X509Certificate(b));
    return true;
  } catch {
    return false;
  }
}
