import { MotusError, type MotusErrorCode, type MotusErrorJSON } from '../errors.js';
import { HttpTransport, TlsRefusal, type ClientTls, type TransportResponse } from './http-transport.js';
import { readJsonLines } from './ndjson.js';

export interface JsonHttpClientOptions {
  /** Base URL, e.g. https://127.0.0.1:7300 (a trailing slash is dropped). */
  url: string;
  /** Sent as `Authorization: Bearer …` on every request. */
  token: string;
  /** Per-request timeout of `call` unless the call names its own. */
  timeoutMs?: number;
  /** Who answers, for error messages: "the Motus server", "the agent of host A". */
  peer: string;
  /** The code of an answer that is not a coded Motus error (a proxy's 502, a body that is not JSON). */
  badAnswerCode: MotusErrorCode;
  /** Data attached to every error this client makes (the host's name, say). */
  details?: Record<string, unknown>;
  /** Extra headers, read for each request (the request id being served). */
  headers?: () => Record<string, string>;
  /**
   * For https: the CA bundle to trust (and a client certificate), fixed or read
   * at each request with a generation that changes when the material does (CA
   * rotation), so connections are remade with the new one.
   */
  tls?: ClientTls | (() => { generation: number; tls: ClientTls });
}

export interface CallOptions {
  timeoutMs?: number;
  /** `text` returns a successful body as it is (an export), `json` parses it. */
  as?: 'json' | 'text';
}

/**
 * JSON over HTTP with a bearer token, shared by the API client and the server's link
 * to its agents, so both map failures the same way: an unreachable peer is
 * MOTUS_E_AGENT_UNREACHABLE, a coded error body is that error, anything else is the
 * caller's `badAnswerCode` with the HTTP status.
 */
export class JsonHttpClient {
  readonly base: string;
  private readonly timeoutMs: number;
  private transport: { generation: number; http: HttpTransport } | undefined;

  constructor(private readonly options: JsonHttpClientOptions) {
    this.base = options.url.replace(/\/+$/, '');
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  /** Closes kept connections. */
  close(): void {
    this.transport?.http.close();
    this.transport = undefined;
  }

  /** The connection pool for the current TLS material. */
  private http(): HttpTransport {
    const source = this.options.tls;
    const current = typeof source === 'function' ? source() : { generation: 0, tls: source };
    if (!this.transport || this.transport.generation !== current.generation) {
      this.transport?.http.close();
      this.transport = { generation: current.generation, http: new HttpTransport(this.base, current.tls) };
    }
    return this.transport.http;
  }

  async call<T>(method: string, path: string, body?: unknown, options: CallOptions = {}): Promise<T> {
    const response = await this.send(method, path, body, AbortSignal.timeout(options.timeoutMs ?? this.timeoutMs));
    if (!response.ok) throw await this.errorOf(response);
    let text: string;
    try {
      text = await response.text();
    } catch (err) {
      throw this.unreachable(err);
    }
    if (options.as === 'text') return text as T;
    try {
      return (text.length > 0 ? JSON.parse(text) : undefined) as T;
    } catch {
      throw this.badAnswer(`${this.options.peer} answered HTTP ${response.status} with a body that is not JSON`, response.status);
    }
  }

  /**
   * The JSON lines of a streamed answer, until the peer ends it. No timeout of its
   * own: the caller's `signal` ends it (and then the generator throws, as any cut does).
   */
  async *stream(method: string, path: string, body: unknown, signal?: AbortSignal): AsyncGenerator<unknown> {
    const response = await this.send(method, path, body, signal);
    if (!response.ok || !response.body) throw await this.errorOf(response);
    try {
      yield* readJsonLines(response.body);
    } catch (err) {
      throw this.unreachable(err);
    }
  }

  private async send(method: string, path: string, body: unknown, signal: AbortSignal | undefined): Promise<TransportResponse> {
    const attempt = () =>
      this.http().request(path, {
        method,
        headers: { ...this.options.headers?.(), authorization: `Bearer ${this.options.token}`, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        ...(signal ? { signal } : {}),
      });
    try {
      return await attempt();
    } catch (err) {
      // A kept-alive socket the peer closed as idle just as the request went out
      // ("other side closed"): the request never reached it, so a read is sent again.
      if (method === 'GET' && !signal?.aborted && socketClosedEarly(err)) {
        try {
          return await attempt();
        } catch (again) {
          throw this.unreachable(again);
        }
      }
      throw this.unreachable(err);
    }
  }

  private async errorOf(response: TransportResponse): Promise<MotusError> {
    const text = await response.text().catch(() => '');
    try {
      const error = (JSON.parse(text) as { error?: MotusErrorJSON } | null)?.error;
      if (error && typeof error.code === 'string') return MotusError.fromJSON(error);
    } catch {
      /* not JSON: described below */
    }
    return this.badAnswer(`${this.options.peer} answered HTTP ${response.status}`, response.status);
  }

  private badAnswer(message: string, status: number): MotusError {
    return new MotusError(this.options.badAnswerCode, message, { ...this.options.details, status });
  }

  private unreachable(err: unknown): MotusError {
    if (err instanceof TlsRefusal) {
      return new MotusError(
        'MOTUS_E_TLS',
        `${this.options.peer} at ${this.base} is not trusted: ${err.message}${this.options.peer.includes('server') ? '; give the site CA (--ca FILE or MOTUS_CA, the ca.pem motusd writes into its state folder)' : ''}`,
        { ...this.options.details, url: this.base },
        { cause: err },
      );
    }
    const cause = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
    return new MotusError('MOTUS_E_AGENT_UNREACHABLE', `cannot reach ${this.options.peer} at ${this.base}: ${cause}`, { ...this.options.details, url: this.base }, { cause: err });
  }
}

function socketClosedEarly(err: unknown): boolean {
  const codes = [(err as { code?: string } | undefined)?.code, (err as { cause?: { code?: string } } | undefined)?.cause?.code];
  return codes.some((code) => code === 'ECONNRESET' || code === 'UND_ERR_SOCKET');
}
