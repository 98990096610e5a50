import { classifyMessage, type QmpCommand, type QmpDecodeResult } from './messages.js';

/**
 * QMP wire codec: JSON objects, one per line (QEMU ends them with CRLF; LF alone is
 * accepted). Pure and total: decoding returns results for every input and never
 * throws, whatever bytes arrive and however the socket splits them.
 */

/** A QMP line longer than this is not something QEMU sends; it is dropped with an error. */
export const DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024;

const LF = 0x0a;
const CR = 0x0d;

export interface QmpDecoderState {
  /** Bytes of a line not finished yet. */
  readonly pending: Buffer;
  /** True while the rest of an over-long line is being skipped up to its newline. */
  readonly discarding: boolean;
}

export const INITIAL_DECODER_STATE: QmpDecoderState = Object.freeze({ pending: Buffer.alloc(0), discarding: false });

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Decodes one line (without its line feed). Empty lines yield nothing. */
export function decodeLine(line: Uint8Array): QmpDecodeResult | undefined {
  const end = line.length > 0 && line[line.length - 1] === CR ? line.length - 1 : line.length;
  let text: string;
  try {
    text = utf8.decode(line.subarray(0, end));
  } catch {
    return { ok: false, error: { kind: 'invalid-utf8', detail: 'the line is not valid UTF-8', excerpt: Buffer.from(line.subarray(0, Math.min(end, 200))).toString('latin1') } };
  }
  if (text.trim() === '') return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { ok: false, error: { kind: 'invalid-json', detail: err instanceof Error ? err.message : 'not JSON', excerpt: text.slice(0, 200) } };
  }
  return classifyMessage(value, text);
}

/**
 * Feeds one chunk: returns the messages (or errors) of every line the chunk
 * completes, and the state to feed the next chunk with.
 */
export function decodeChunk(
  state: QmpDecoderState,
  chunk: Uint8Array,
  maxLineBytes: number = DEFAULT_MAX_LINE_BYTES,
): { state: QmpDecoderState; results: QmpDecodeResult[] } {
  const results: QmpDecodeResult[] = [];
  const buffer = state.pending.length === 0 ? Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength) : Buffer.concat([state.pending, chunk]);
  let discarding = state.discarding;
  let start = 0;
  // Only the new bytes can hold a line feed not seen before.
  let from = state.pending.length;
  for (;;) {
    const lf = buffer.indexOf(LF, from);
    if (lf < 0) break;
    const line = buffer.subarray(start, lf);
    if (discarding) {
      discarding = false;
    } else if (line.length > maxLineBytes) {
      results.push(tooLong(line.length, maxLineBytes, line));
    } else {
      const result = decodeLine(line);
      if (result) results.push(result);
    }
    start = lf + 1;
    from = start;
  }
  let rest = buffer.subarray(start);
  if (!discarding && rest.length > maxLineBytes) {
    results.push(tooLong(rest.length, maxLineBytes, rest));
    discarding = true;
  }
  if (discarding) rest = Buffer.alloc(0);
  // Copy so the state never pins the caller's (possibly large) chunk.
  return { state: { pending: Buffer.from(rest), discarding }, results };
}

function tooLong(length: number, max: number, bytes: Uint8Array): QmpDecodeResult {
  return {
    ok: false,
    error: {
      kind: 'line-too-long',
      detail: `a line of at least ${length} bytes exceeds the ${max}-byte limit; skipped up to its end`,
      excerpt: Buffer.from(bytes.subarray(0, 200)).toString('latin1'),
    },
  };
}

/** Stateful wrapper over decodeChunk for a session's socket. */
export class QmpLineDecoder {
  private state: QmpDecoderState = INITIAL_DECODER_STATE;
  constructor(private readonly maxLineBytes: number = DEFAULT_MAX_LINE_BYTES) {}

  push(chunk: Uint8Array): QmpDecodeResult[] {
    const { state, results } = decodeChunk(this.state, chunk, this.maxLineBytes);
    this.state = state;
    return results;
  }

  /** Bytes held for a line not finished yet. */
  get pendingBytes(): number {
    return this.state.pending.length;
  }
}

export type QmpEncodeResult = { ok: true; line: string } | { ok: false; detail: string };

/** One command as a CRLF-terminated line; fails (without throwing) on values JSON cannot carry. */
export function encodeCommand(command: QmpCommand): QmpEncodeResult {
  let json: string;
  try {
    json = JSON.stringify(command.arguments === undefined ? { execute: command.execute, id: command.id } : command);
  } catch (err) {
    return { ok: false, detail: err instanceof Error ? err.message : String(err) };
  }
  return { ok: true, line: `${json}\r\n` };
}
