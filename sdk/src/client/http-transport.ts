import { request as httpRequest, Agent as HttpAgent, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { request as httpsRequest, Agent as HttpsAgent } from 'node:https';
import type { PeerCertificate } from 'node:tls';

/**
 * What a client trusts and presents over HTTPS. Node's fetch cannot be given a
 * CA of its own (that needs undici's Agent, not part of Node's API), so the
 * clients speak HTTP(S) through node:http/https with this.
 */
export interface ClientTls {
  /** PEM bundle of the CAs to trust (the site CA); the system's are not trusted then. */
  ca: string;
  /** Client certificate and key (mutual TLS: the server talking to its agents). */
  cert?: string;
  key?: string;
  /**
   * Checks the server's certificate once the chain is verified: returns why it is
   * refused, or undefined. Replaces the host-name check (agents are checked by the
   * host name in their certificate, not by the address they listen on).
   */
  checkPeer?(cert: PeerCertificate): string | undefined;
}

export interface TransportResponse {
  status: number;
  ok: boolean;
  headers: IncomingHttpHeaders;
  text(): Promise<string>;
  /** The body as it arrives (NDJSON streams). */
  body: AsyncIterable<Uint8Array>;
}

export interface TransportRequest {
  method: string;
  headers?: Record<string, string>;
  body?: string;
  /** Aborts the request and the body's reading. */
  signal?: AbortSignal;
}

/** A TLS refusal (untrusted certificate, wrong name or role): told apart from an unreachable peer. */
export class TlsRefusal extends Error {}

const TLS_ERROR_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE',
  'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED',
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'EPROTO',
]);

/** One base URL's connections, kept alive (a TLS handshake per request would cost more than the request). */
export class HttpTransport {
  private readonly agent: HttpAgent | HttpsAgent;
  private readonly secure: boolean;

  constructor(
    readonly base: string,
    tls?: ClientTls,
  ) {
    this.secure = base.startsWith('https:');
    if (this.secure) {
      const check = tls?.checkPeer;
      this.agent = new HttpsAgent({
        keepAlive: true,
        maxSockets: 64,
        ...(tls ? { ca: tls.ca } : {}),
        ...(tls?.cert && tls.key ? { cert: tls.cert, key: tls.key } : {}),
        minVersion: 'TLSv1.2',
        ...(check
          ? {
              checkServerIdentity: (_host: string, cert: PeerCertificate) => {
                const refusal = check(cert);
                return refusal === undefined ? undefined : new TlsRefusal(refusal);
              },
            }
          : {}),
      });
    } else {
      this.agent = new HttpAgent({ keepAlive: true, maxSockets: 64 });
    }
  }

  request(path: string, options: TransportRequest): Promise<TransportResponse> {
    const url = new URL(this.base + path);
    const send = this.secure ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { ...(options.headers ?? {}) };
      if (options.body !== undefined) headers['content-length'] = String(Buffer.byteLength(options.body));
      const req = send(url, { method: options.method, headers, agent: this.agent, ...(options.signal ? { signal: options.signal } : {}) }, (res: IncomingMessage) => {
        resolve({
          status: res.statusCode ?? 0,
          ok: (res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300,
          headers: res.headers,
          body: res,
          text: async () => {
            const chunks: Buffer[] = [];
            for await (const chunk of res) chunks.push(chunk as Buffer);
            return Buffer.concat(chunks).toString('utf8');
          },
        });
      });
      req.on('error', (err) => reject(isTlsError(err) ? new TlsRefusal(tlsMessage(err), { cause: err }) : err));
      req.end(options.body);
    });
  }

  /** Closes idle connections. */
  close(): void {
    this.agent.destroy();
  }
}

function isTlsError(err: Error): boolean {
  if (err instanceof TlsRefusal) return true;
  const code = (err as NodeJS.ErrnoException).code ?? '';
  return TLS_ERROR_CODES.has(code) || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_');
}

function tlsMessage(err: Error): string {
  if (err instanceof TlsRefusal) return err.message;
  const code = (err as NodeJS.ErrnoException).code ?? '';
  return `${err.message}${code && !err.message.includes(code) ? ` (${code})` : ''}`;
}

/** The peer refusal check of a certificate the site CA issued: its CN must be `name` and its OU `role`. */
export function expectPeer(name: string, role: string): (cert: PeerCertificate) => string | undefined {
  return (cert) => {
    const first = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);
    const cn = first(cert.subject?.CN as string | string[] | undefined);
    const ou = first(cert.subject?.OU as string | string[] | undefined);
    if (cn === name && ou === role) return undefined;
    return `the certificate presented is for ${ou ?? 'no role'} '${cn ?? '?'}', not for ${role} '${name}'`;
  };
}
