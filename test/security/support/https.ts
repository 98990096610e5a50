import { request } from 'node:https';

export interface RawAnswer {
  status: number;
  /** The error code of a JSON error answer. */
  code?: string;
  text: string;
}

export interface RawRequest {
  method: string;
  /** Full URL (https). */
  url: string;
  ca: string;
  token?: string;
  body?: string | Buffer;
  /** A client certificate to present. */
  cert?: { cert: string; key: string };
  timeoutMs?: number;
}

/**
 * One HTTPS request with exactly the bytes, token and certificate given, as an
 * attacker would send it (no client library smoothing anything). Resolves with the
 * answer as soon as it has come, even when the server then closes the connection
 * on a body it refused to read.
 */
export function rawRequest(r: RawRequest): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const headers: Record<string, string | number> = {};
    if (r.token !== undefined) headers.authorization = `Bearer ${r.token}`;
    if (r.body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = Buffer.byteLength(r.body);
    }
    const req = request(
      r.url,
      { method: r.method, headers, ca: r.ca, agent: false, ...(r.cert ? { cert: r.cert.cert, key: r.cert.key } : {}), timeout: r.timeoutMs ?? 60_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        const done = () => {
          if (settled) return;
          settled = true;
          const text = Buffer.concat(chunks).toString('utf8');
          let code: string | undefined;
          try {
            code = (JSON.parse(text) as { error?: { code?: string } }).error?.code;
          } catch {
            /* not JSON: no code */
          }
          resolve({ status: res.statusCode ?? 0, text, ...(code ? { code } : {}) });
        };
        res.on('end', done);
        res.on('close', done);
        res.on('error', done);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${r.method} ${r.url}: no answer within ${r.timeoutMs ?? 60_000} ms`)));
    req.on('error', (err) => {
      // A write cut short by the server closing after its 413 is not a failure once the answer is in.
      if (!settled) {
        settled = true;
        reject(err);
      }
    });
    req.end(r.body);
  });
}
