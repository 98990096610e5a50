import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { timingSafeEqual } from 'node:crypto';
import { MotusError, redact, type Logger, type MotusErrorCode, type Role } from '@motus/sdk';
import { REQUEST_ID_HEADER, requestIdFrom, withRequestId } from '../kernel/request-context.js';
import { requireRole, type Principal } from '../server/identity/roles.js';
import { AuthFailureLimiter, type AuthFailureLimits } from './auth-failure-limiter.js';

/** Finds who a bearer token belongs to; undefined when it belongs to nobody. */
export type Authenticator = (token: string) => Principal | undefined;

/** A refused request (401, 403, 400), for the audit trail. */
export interface DeniedRequest {
  method: string;
  path: string;
  code: MotusErrorCode;
  message: string;
  user?: string;
}

/** One answered request, for the access log and the request metrics. */
export interface ServedRequest {
  method: string;
  /** The route's pattern (`/v1/vms/:name/stop`), or `unmatched`: a bounded set, fit for a metric label. */
  route: string;
  status: number;
  seconds: number;
}

/** The certificate and key a server answers TLS with, and the CA bundle it checks client certificates against. */
export interface ServerTls {
  key: string;
  cert: string;
  ca: string;
}

/** Who a verified client certificate (issued by the site CA) says the peer is. */
export interface PeerIdentity {
  /** The certificate's CN: a host name, or the server's name. */
  name: string;
  /** Its OU: 'server' or 'host'. */
  role: string;
}

export interface JsonHttpServerOptions {
  onDenied?(request: DeniedRequest): void;
  onServed?(request: ServedRequest): void;
  /** HTTPS with these credentials; clients may present a certificate (checked per route or by `requirePeer`). */
  tls?: ServerTls;
  /** Refuses (401) every request whose client certificate does not pass: returns why, or undefined to accept. */
  requirePeer?(peer: PeerIdentity | undefined): string | undefined;
  /** Failed authentications tolerated per client address before 429. */
  authFailureLimits?: AuthFailureLimits;
}

export interface RequestContext {
  method: string;
  params: Record<string, string>;
  query: URLSearchParams;
  body: unknown;
  req: IncomingMessage;
  res: ServerResponse;
  /** Aborted when the client goes away. */
  signal: AbortSignal;
  /** The token's user, on servers that authenticate users. */
  principal?: Principal;
  /** The request id (the caller's x-request-id when well formed, a fresh one otherwise). */
  requestId: string;
  /** The client's certificate identity, when it presented one the site CA issued. */
  peer?: PeerIdentity;
}

/** A handler's answer with a status other than the default (202 Accepted), or a body that is not JSON. */
export class Reply {
  constructor(
    readonly status: number,
    readonly body: unknown,
    readonly contentType?: string,
    readonly headers: Record<string, string> = {},
  ) {}
}

/** A handler returns a JSON value, or takes over the response itself (streams) and returns STREAMED. */
export type Handler = (ctx: RequestContext) => Promise<unknown>;
export const STREAMED = Symbol('streamed');

export interface RouteOptions {
  /** Reachable without a token (health checks). */
  public?: boolean;
  /** A token other than the server's default (the agent protocol's routes). */
  token?: string;
  /** The least role a user needs, on servers that authenticate users (default viewer). */
  role?: Role;
  /** Query parameters the route reads; any other is refused (400 naming it). Default: none. */
  query?: readonly string[];
}

/** One route as the server answers it: what the all-routes security sweep walks. */
export interface RouteEntry {
  method: string;
  /** The pattern, with `:name` parameters. */
  path: string;
  /** Reachable without a token. */
  public: boolean;
  /** Takes a token of its own (the agent protocol's), not a user's. */
  ownToken: boolean;
  /** The least role a user needs (user-token routes). */
  role: Role;
  /** Query parameters it reads. */
  query: string[];
  /** Reads a JSON body (every method but GET and HEAD). */
  body: boolean;
}

interface Route {
  method: string;
  path: string;
  pattern: RegExp;
  keys: string[];
  handler: Handler;
  options: RouteOptions;
}

export const MAX_BODY_BYTES = 1 << 20;
const BODY_TIMEOUT_MS = 10_000;
/** How much of a refused (oversize) body is read and dropped so that its sender gets the 413, and how long a pause in it ends that. */
const REFUSED_BODY_DISCARD_BYTES = 8 * MAX_BODY_BYTES;
const REFUSED_BODY_IDLE_MS = 500;

const STATUS: Partial<Record<MotusErrorCode, number>> = {
  MOTUS_E_INVALID_REQUEST: 400,
  MOTUS_E_UNAUTHORIZED: 401,
  MOTUS_E_FORBIDDEN: 403,
  MOTUS_E_NOT_FOUND: 404,
  MOTUS_E_VM_NOT_FOUND: 404,
  MOTUS_E_HOST_NOT_FOUND: 404,
  MOTUS_E_VM_EXISTS: 409,
  MOTUS_E_VM_BUSY: 409,
  MOTUS_E_VM_NOT_RUNNING: 409,
  MOTUS_E_SAME_HOST: 409,
  MOTUS_E_INSUFFICIENT_MEMORY: 409,
  MOTUS_E_MIGRATION_VETOED: 409,
  MOTUS_E_USER_EXISTS: 409,
  MOTUS_E_RESERVATION_FAILED: 409,
  MOTUS_E_FENCED: 409,
  MOTUS_E_NO_DESTINATION: 409,
  MOTUS_E_PLACEMENT_RULE: 409,
  MOTUS_E_PLACEMENT_MANUAL: 409,
  MOTUS_E_EVACUATION_BLOCKED: 409,
  MOTUS_E_AUDIT_TAMPERED: 409,
  MOTUS_E_ISCSI_LUN_HELD: 409,
  MOTUS_E_NFS_LOCK_HELD: 409,
  MOTUS_E_DATASTORE_NOT_VISIBLE: 409,
  MOTUS_E_PAYLOAD_TOO_LARGE: 413,
  MOTUS_E_RATE_LIMITED: 429,
  MOTUS_E_TLS_UNAVAILABLE: 409,
  MOTUS_E_TLS: 502,
  MOTUS_E_HOST_DOWN: 503,
  MOTUS_E_AGENT_UNREACHABLE: 502,
};

export function httpStatusOf(code: MotusErrorCode): number {
  return STATUS[code] ?? 500;
}

/** A small JSON-over-HTTP server with bearer-token auth and NDJSON streams. */
export class JsonHttpServer {
  private readonly routes: Route[] = [];
  private server: Server | HttpsServer | undefined;
  private readonly limiter: AuthFailureLimiter;

  /** `auth` is one shared token (the agent protocol), or an authenticator of users' tokens. */
  constructor(
    private readonly auth: string | Authenticator,
    private readonly logger: Logger,
    private readonly hooks: JsonHttpServerOptions = {},
  ) {
    this.limiter = new AuthFailureLimiter(hooks.authFailureLimits);
  }

  route(method: string, path: string, handler: Handler, options: RouteOptions = {}): this {
    const keys: string[] = [];
    const pattern = new RegExp(
      '^' +
        path.replace(/:([a-zA-Z]+)/g, (_m, key: string) => {
          keys.push(key);
          return '([^/]+)';
        }) +
        '$',
    );
    this.routes.push({ method, path, pattern, keys, handler, options });
    return this;
  }

  /** Every route, in matching order. */
  routeTable(): RouteEntry[] {
    return this.routes.map(({ method, path, options }) => ({
      method,
      path,
      public: options.public === true,
      ownToken: options.token !== undefined || typeof this.auth === 'string',
      role: options.role ?? 'viewer',
      query: [...(options.query ?? [])],
      body: method !== 'GET' && method !== 'HEAD',
    }));
  }

  async listen(address: string): Promise<string> {
    const colon = address.lastIndexOf(':');
    const host = address.slice(0, colon).replace(/^\[|\]$/g, '');
    const port = Number(address.slice(colon + 1));
    const onRequest = (req: IncomingMessage, res: ServerResponse) => void this.dispatch(req, res);
    const tls = this.hooks.tls;
    // Client certificates are asked for but not required at the handshake: a
    // request without one gets a coded 401 it can read, not a reset connection.
    const server = tls
      ? createHttpsServer({ key: tls.key, cert: tls.cert, ca: tls.ca, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' }, onRequest)
      : createServer(onRequest);
    server.keepAliveTimeout = 5_000;
    server.headersTimeout = 15_000;
    server.requestTimeout = 0;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    const bound = server.address() as AddressInfo;
    return `${tls ? 'https' : 'http'}://${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`;
  }

  /** New credentials (CA rotation): new connections use them, open ones finish with the old. */
  setTls(tls: ServerTls): void {
    const server = this.server;
    if (!server || !('setSecureContext' in server)) throw new MotusError('MOTUS_E_INTERNAL', 'this API server does not run HTTPS');
    this.hooks.tls = tls;
    server.setSecureContext({ key: tls.key, cert: tls.cert, ca: tls.ca });
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = requestIdFrom(req.headers[REQUEST_ID_HEADER]);
    res.setHeader(REQUEST_ID_HEADER, requestId);
    const started = process.hrtime.bigint();
    let route = 'unmatched';
    res.on('close', () => {
      const served: ServedRequest = { method: req.method ?? 'GET', route, status: res.statusCode, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
      withRequestId(requestId, () => {
        const fields = { method: served.method, path: req.url ?? '/', route, status: served.status, ms: Math.round(served.seconds * 1000) };
        // Reads (heartbeats, page loads) would drown the log at info; changes and failures stay visible.
        if (served.status >= 500) this.logger.error('request', fields);
        else if (served.method === 'GET' || served.method === 'HEAD') this.logger.debug('request', fields);
        else this.logger.info('request', fields);
      });
      this.hooks.onServed?.(served);
    });
    return withRequestId(requestId, () =>
      this.serve(req, res, requestId, (path) => {
        route = path;
      }),
    );
  }

  private async serve(req: IncomingMessage, res: ServerResponse, requestId: string, matchedRoute: (path: string) => void): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const method = req.method ?? 'GET';
    const abort = new AbortController();
    res.on('close', () => abort.abort());
    let principal: Principal | undefined;
    try {
      let matched: { route: Route; params: Record<string, string> } | undefined;
      let pathKnown = false;
      for (const route of this.routes) {
        const m = route.pattern.exec(url.pathname);
        if (!m) continue;
        pathKnown = true;
        if (route.method !== method) continue;
        const params: Record<string, string> = {};
        route.keys.forEach((key, i) => {
          params[key] = decodeURIComponent(m[i + 1]!);
        });
        matched = { route, params };
        break;
      }
      if (matched) matchedRoute(matched.route.path);
      const routeOptions = matched?.route.options ?? {};
      const peer = peerOf(req);
      const address = req.socket.remoteAddress ?? 'unknown';
      if (!routeOptions.public) {
        const wait = this.limiter.retryAfterSeconds(address);
        if (wait > 0) {
          res.setHeader('retry-after', String(wait));
          throw new MotusError('MOTUS_E_RATE_LIMITED', `too many failed authentications from ${address}; try again in ${wait} s`, { retryAfterSeconds: wait });
        }
        try {
          const refusal = this.hooks.requirePeer?.(peer);
          if (refusal !== undefined) throw new MotusError('MOTUS_E_UNAUTHORIZED', refusal);
          if (routeOptions.token !== undefined || typeof this.auth === 'string') {
            if (!this.authorized(req, routeOptions.token ?? (this.auth as string))) throw new MotusError('MOTUS_E_UNAUTHORIZED', 'missing or wrong bearer token');
          } else {
            principal = this.auth(presentedToken(req));
            if (!principal) throw new MotusError('MOTUS_E_UNAUTHORIZED', 'missing, unknown or revoked bearer token');
          }
        } catch (err) {
          this.limiter.recordFailure(address);
          throw err;
        }
        if (principal && matched) requireRole(principal, routeOptions.role ?? 'viewer', `${method} ${url.pathname}`);
      }
      if (!matched) {
        throw new MotusError('MOTUS_E_NOT_FOUND', pathKnown ? `${method} is not allowed on ${url.pathname}` : `no such API path: ${url.pathname}`);
      }
      const allowed = new Set(routeOptions.query ?? []);
      for (const key of url.searchParams.keys()) {
        if (!allowed.has(key)) {
          throw new MotusError('MOTUS_E_INVALID_REQUEST', `${key}: ${method} ${url.pathname} takes no query parameter '${key}'${allowed.size ? ` (it takes ${[...allowed].join(', ')})` : ''}`, { field: key });
        }
      }
      const body = method === 'GET' || method === 'HEAD' ? undefined : await readJsonBody(req);
      const result = await matched.route.handler({
        method,
        params: matched.params,
        query: url.searchParams,
        body,
        req,
        res,
        signal: abort.signal,
        requestId,
        ...(principal ? { principal } : {}),
        ...(peer ? { peer } : {}),
      });
      if (result === STREAMED) return;
      if (result instanceof Reply) {
        if (typeof result.body === 'string' || Buffer.isBuffer(result.body)) {
          res.writeHead(result.status, { ...result.headers, 'content-type': result.contentType ?? 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(result.body) });
          res.end(result.body);
        } else {
          for (const [name, value] of Object.entries(result.headers)) res.setHeader(name, value);
          sendJson(res, result.status, result.body ?? {});
        }
        return;
      }
      sendJson(res, method === 'POST' ? 201 : 200, result ?? {});
    } catch (err) {
      const error = MotusError.from(err);
      if (error.code === 'MOTUS_E_INTERNAL') this.logger.error('request failed', { method, path: url.pathname, error: error.message });
      if (error.code === 'MOTUS_E_UNAUTHORIZED' || error.code === 'MOTUS_E_RATE_LIMITED') {
        this.logger.warn('request refused', { method, path: url.pathname, code: error.code, from: req.socket.remoteAddress });
      }
      const refused = error.code === 'MOTUS_E_UNAUTHORIZED' || error.code === 'MOTUS_E_FORBIDDEN' || ((error.code === 'MOTUS_E_INVALID_REQUEST' || error.code === 'MOTUS_E_PAYLOAD_TOO_LARGE') && method !== 'GET');
      if (refused && this.hooks.onDenied && typeof this.auth !== 'string') {
        try {
          this.hooks.onDenied({ method, path: url.pathname, code: error.code, message: error.message, ...(principal ? { user: principal.user } : {}) });
        } catch (auditErr) {
          this.logger.error('could not record a refused request', { error: (auditErr as Error).message });
        }
      }
      if (res.headersSent) {
        res.end();
        return;
      }
      if (error.code === 'MOTUS_E_PAYLOAD_TOO_LARGE') {
        await drainRefusedBody(req);
        res.setHeader('connection', 'close');
      }
      sendJson(res, httpStatusOf(error.code), { error: redact(error.toJSON()) });
    }
  }

  private authorized(req: IncomingMessage, token: string): boolean {
    const presented = Buffer.from(presentedToken(req));
    const expected = Buffer.from(token);
    return presented.length === expected.length && timingSafeEqual(presented, expected);
  }
}

/** The client certificate's identity, only when the TLS layer verified it against the site CA. */
function peerOf(req: IncomingMessage): PeerIdentity | undefined {
  const socket = req.socket as Partial<TLSSocket>;
  if (!socket.encrypted || !socket.authorized || typeof socket.getPeerCertificate !== 'function') return undefined;
  const subject = socket.getPeerCertificate().subject as Record<string, string | string[]> | undefined;
  const first = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);
  const name = first(subject?.CN);
  const role = first(subject?.OU);
  return name && role ? { name, role } : undefined;
}

function presentedToken(req: IncomingMessage): string {
  const header = req.headers.authorization ?? '';
  return header.startsWith('Bearer ') ? header.slice(7).trim() : '';
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const text = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** Starts an NDJSON response; write one JSON value per line, then end. */
export function startNdjson(res: ServerResponse): { write(value: unknown): void; end(): void } {
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
  res.flushHeaders();
  return {
    write: (value) => {
      if (!res.writableEnded) res.write(JSON.stringify(value) + '\n');
    },
    end: () => {
      if (!res.writableEnded) res.end();
    },
  };
}

function tooLarge(): MotusError {
  return new MotusError('MOTUS_E_PAYLOAD_TOO_LARGE', `request body larger than ${MAX_BODY_BYTES} bytes`, { limitBytes: MAX_BODY_BYTES });
}

/**
 * Before a 413 goes out (with `connection: close`), the rest of the refused body is read
 * and dropped: until it ends, until nothing came for REFUSED_BODY_IDLE_MS (a sender that
 * declared more than it sends), or up to REFUSED_BODY_DISCARD_BYTES. Closing with unread
 * bytes makes the kernel reset the connection, and the reset can wipe the answer out of
 * the client's buffers before it reads it (it then sees EPIPE or ECONNRESET, not the 413).
 */
function drainRefusedBody(req: IncomingMessage): Promise<void> {
  if (req.complete) return Promise.resolve();
  return new Promise((resolve) => {
    let left = REFUSED_BODY_DISCARD_BYTES;
    let idle: NodeJS.Timeout;
    const done = () => {
      clearTimeout(idle);
      req.off('data', onData);
      req.pause();
      resolve();
    };
    const onData = (chunk: Buffer) => {
      left -= chunk.length;
      if (left < 0) return done();
      idle.refresh();
    };
    idle = setTimeout(done, REFUSED_BODY_IDLE_MS);
    req.on('data', onData);
    req.once('end', done);
    req.once('error', done);
    req.resume();
  });
}

function readJsonBody(req: IncomingMessage): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? 0);
  // Refused before a byte of it is read.
  if (declared > MAX_BODY_BYTES) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => {
      reject(new MotusError('MOTUS_E_INVALID_REQUEST', `request body not received within ${BODY_TIMEOUT_MS} ms`));
      req.destroy();
    }, BODY_TIMEOUT_MS);
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        clearTimeout(timer);
        // The rest is dropped by the refusal (drainRefusedBody), not kept.
        req.off('data', onData);
        req.pause();
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.on('end', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('utf8');
      if (text.trim().length === 0) return resolve({});
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch {
        return reject(new MotusError('MOTUS_E_INVALID_REQUEST', 'request body is not valid JSON', { field: '(body)' }));
      }
      // Every route's body is an object; a null would otherwise pass for "no fields" where handlers default an absent body.
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        return reject(new MotusError('MOTUS_E_INVALID_REQUEST', `request body must be a JSON object, not ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}`, { field: '(body)' }));
      }
      resolve(value);
    });
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
