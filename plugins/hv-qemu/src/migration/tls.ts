import { execFile } from 'node:child_process';

/**
 * QEMU's TLS for migration streams: a tls-creds-x509 object holding the host's
 * credentials, named by the `tls-creds` migration parameter. The receiving QEMU is
 * the TLS server and asks for the sender's certificate (verify-peer); the sender
 * checks the receiver's certificate against `tls-hostname`, the destination host's
 * name, so a stream cannot be diverted to another host of the same site.
 */

/** The object-add arguments of a tls-creds-x509 object reading `dir` (ca-cert.pem, {server,client}-{cert,key}.pem). */
export function tlsCredsObject(id: string, dir: string, endpoint: 'server' | 'client'): { 'qom-type': 'tls-creds-x509'; id: string; dir: string; endpoint: 'server' | 'client'; 'verify-peer': true } {
  return { 'qom-type': 'tls-creds-x509', id, dir, endpoint, 'verify-peer': true };
}

/**
 * migrate-set-parameters for a stream with the credentials object `creds`, or
 * without TLS: the empty string switches it off, so a VM that once moved encrypted
 * does not keep old settings when the site's policy changes.
 */
export function tlsParameters(creds: string | undefined, hostname?: string): Record<string, string> {
  if (!creds) return { 'tls-creds': '', 'tls-hostname': '' };
  return { 'tls-creds': creds, 'tls-hostname': hostname ?? '' };
}

const tlsSupport = new Map<string, Promise<boolean>>();

/** Whether this QEMU binary has tls-creds-x509 (built with GnuTLS), from `-object help`; asked once per binary. */
export function qemuHasTls(qemuPath: string, timeoutMs = 10_000): Promise<boolean> {
  let known = tlsSupport.get(qemuPath);
  if (!known) {
    known = new Promise<boolean>((resolve) => {
      execFile(qemuPath, ['-object', 'help'], { timeout: timeoutMs, encoding: 'utf8' }, (_err, stdout) => resolve(/^\s*tls-creds-x509\s*$/m.test(stdout ?? '')));
    });
    tlsSupport.set(qemuPath, known);
  }
  return known;
}
