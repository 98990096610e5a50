import { MotusError, type MotusErrorCode, type MotusErrorJSON } from '../errors.js';
import { readJsonLines } from './ndjson.js';

export interface JsonHttpClientOptions {
  /** Base URL, e.g. http://127.0.0.1:7300 (a trailing slash is dropped). */
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

  constructor(private readonly options: JsonHttpClientOptions) {
    this.base = options.url.replace(/\/+$/, '');
    this.timeoutMs = options.timeoutMs ?? 30_000;
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
      yield* readJsonLines(response.body as unknown as AsyncIterable<Uint8Array>);
    } catch (err) {
      throw this.unreachable(err);
    }
  }

  private async send(method: string, path: string, body: unknown, signal: AbortSignal | undefined): Promise<Response> {
    const attempt = () =>
      fetch(this.base + path, {
        method,
        headers: { ...this.options.headers?.(), authorization: `Bearer ${this.options.token}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
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

  private async errorOf(response: Response): Promise<MotusError> {
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
    const cause = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
    return new MotusError('MOTUS_E_AGENT_UNREACHABLE', `cannot reach ${this.options.peer} at ${this.base}: ${cause}`, { ...this.options.details, url: this.base }, { cause: err });
  }
}

function socketClosedEarly(err: unknown): boolean {
  const cause = (err as { cause?: { code?: string } } | undefined)?.cause;
  return cause?.code === 'UND_ERR_SOCKET';
}
