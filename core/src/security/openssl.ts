import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { MotusError } from '@motus/sdk';

/**
 * The `openssl` command line builds and signs the site's certificates. Node's
 * crypto makes keys and reads certificates (X509Certificate) but cannot write
 * one; openssl is on every Debian host (package `openssl`), so the CA needs no
 * npm dependency and no hand-written ASN.1.
 */

const OPENSSL_TIMEOUT_MS = 20_000;

/**
 * openssl's config: no prompts, the subject always from -subj, and the two kinds
 * of certificate the site issues. `{{SAN}}` is replaced per leaf.
 */
export const OPENSSL_CONFIG = `[req]
distinguished_name = dn
prompt = no
[dn]
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[leaf_ext]
basicConstraints = critical,CA:FALSE
# QEMU's checks want both usages on a TLS certificate (GnuTLS sanity check).
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
subjectAltName = {{SAN}}
`;

/** Runs openssl; rejects with MOTUS_E_CA carrying its stderr. */
export function openssl(args: string[], cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { cwd, timeout: OPENSSL_TIMEOUT_MS, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
      reject(
        new MotusError(
          'MOTUS_E_CA',
          missing
            ? "the site CA needs the 'openssl' command (Debian package openssl): run scripts/install-system-deps.sh"
            : `openssl ${args[0]} failed: ${(stderr || err.message).trim().slice(0, 600)}`,
          { command: args[0] },
        ),
      );
    });
  });
}

/** A fresh ECDSA P-256 private key, PKCS#8 PEM (read by Node, openssl and QEMU's GnuTLS). */
export function newPrivateKey(): string {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1', privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } });
  return privateKey;
}

/** An openssl -subj value; the parts are the site's own names, with /, \\ and = escaped. */
export function subject(parts: Array<[string, string]>): string {
  return parts.map(([k, v]) => `/${k}=${v.replace(/[\\/=+]/g, (c) => `\\${c}`)}`).join('');
}
