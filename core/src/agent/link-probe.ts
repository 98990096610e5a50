import { createConnection, createServer, type AddressInfo, type Socket } from 'node:net';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { MotusError } from '@motus/sdk';

/**
 * The link-rate probe between two agents, run before a migration: the destination
 * agent opens a sink on its migration address, the source agent pushes bytes into it
 * and the sink answers with how many arrived. The rate is bytes the sink received
 * over the time from the first write to its answer, so what is still in flight or in
 * socket buffers when the sender stops is not counted as sent.
 */
export interface LinkProbeResult {
  bytes: number;
  ms: number;
  bytesPerSec: number;
  /**
   * How late the sender's and the sink's event loops ran their timers during the
   * probe (the larger mean, ms). A process waiting for a CPU reads as a slow link:
   * measured on the 2-core test machine under load 17-20, the probe pushed 8 MiB in
   * 500 ms with 6-83 ms of lateness, against about 1 ms for an idle loop. Above
   * PROBE_STARVED_MS the rate is only a lower bound of the link.
   */
  lateMs: number;
}

/** Mean timer lateness above which a probe measured CPU starvation rather than the link. */
export const PROBE_STARVED_MS = 5;
const LATENESS_RESOLUTION_MS = 5;

/** Timer lateness of this process from now until `stop()`, mean ms. */
function watchLateness(): { stop(): number } {
  const histogram = monitorEventLoopDelay({ resolution: LATENESS_RESOLUTION_MS });
  histogram.enable();
  return {
    stop() {
      histogram.disable();
      // The histogram holds whole intervals (the resolution plus the lateness); no sample yet means none was late.
      return histogram.count > 0 ? Math.max(0, histogram.mean / 1e6 - LATENESS_RESOLUTION_MS) : 0;
    },
  };
}

export interface LinkProbeOptions {
  /** Stop pushing after this long… */
  durationMs: number;
  /** …or after this many bytes, whichever comes first. */
  maxBytes: number;
  /** The whole probe, answer included, fails after this long. */
  timeoutMs: number;
}

export interface LinkProbeSink {
  host: string;
  port: number;
}

/** The sink's answer after the sender ended its side: the byte count (8 bytes, big-endian), then its timer lateness in µs (4 bytes). */
const ANSWER_BYTES = 12;
// Large writes: libuv keeps the socket full between JavaScript turns, so a busy event loop does not read as a slow link.
const CHUNK = Buffer.alloc(8 * 1024 * 1024, 0xa5);

/**
 * Opens a one-shot sink on `address`: it accepts one connection, counts what arrives
 * until the sender ends, answers with the count and closes. It closes by itself after
 * `lifetimeMs` whether or not a sender came, so a probe that never happens costs a
 * port for that long only.
 */
export async function openLinkProbeSink(address: string, lifetimeMs: number): Promise<LinkProbeSink> {
  const server = createServer();
  const close = () => server.close();
  const lifetime = setTimeout(close, lifetimeMs);
  lifetime.unref();
  server.once('connection', (socket: Socket) => {
    // One sender per sink: a second connection is refused by closing the listener now.
    server.close();
    let received = 0;
    const lateness = watchLateness();
    socket.setTimeout(lifetimeMs, () => socket.destroy());
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
    });
    socket.on('end', () => {
      const answer = Buffer.alloc(ANSWER_BYTES);
      answer.writeBigUInt64BE(BigInt(received));
      answer.writeUInt32BE(Math.min(0xffffffff, Math.round(lateness.stop() * 1000)), 8);
      socket.end(answer);
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      clearTimeout(lifetime);
      lateness.stop();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, address, () => resolve());
  });
  server.on('error', close);
  return { host: address, port: (server.address() as AddressInfo).port };
}

/**
 * Pushes up to `maxBytes` (or for at most `durationMs`, whichever comes first) to a
 * sink and returns the rate the sink received them at. `maxBytes` lets the caller stop
 * as soon as the link has shown it carries what the migration may use anyway (the
 * site's cap for the probe's duration): on a fast link the probe then costs
 * milliseconds. Fails with MOTUS_E_LINK_PROBE when the sink cannot be reached or does
 * not answer within `timeoutMs`.
 */
export async function probeLinkRate(sink: LinkProbeSink, options: LinkProbeOptions): Promise<LinkProbeResult> {
  const socket = createConnection({ host: sink.host, port: sink.port });
  socket.setNoDelay(true);
  const answer: Buffer[] = [];
  let started = 0;
  const lateness = watchLateness();
  try {
    return await new Promise<LinkProbeResult>((resolve, reject) => {
      const fail = (why: string) => reject(new MotusError('MOTUS_E_LINK_PROBE', `link probe to ${sink.host}:${sink.port} failed: ${why}`, { host: sink.host, port: sink.port }));
      const timer = setTimeout(() => fail(`no answer within ${options.timeoutMs} ms`), options.timeoutMs);
      socket.once('error', (err) => {
        clearTimeout(timer);
        fail(err.message);
      });
      socket.on('data', (chunk: Buffer) => answer.push(chunk));
      socket.once('end', () => {
        clearTimeout(timer);
        const reply = Buffer.concat(answer);
        if (reply.length < ANSWER_BYTES) return fail(`the sink answered ${reply.length} of ${ANSWER_BYTES} bytes`);
        const bytes = Number(reply.readBigUInt64BE(0));
        const ms = Math.max(0.001, performance.now() - started);
        const lateMs = Math.max(lateness.stop(), reply.readUInt32BE(8) / 1000);
        resolve({ bytes, ms, bytesPerSec: (bytes / ms) * 1000, lateMs });
      });
      socket.once('connect', () => {
        started = performance.now();
        let sent = 0;
        const pump = () => {
          while (sent < options.maxBytes && performance.now() - started < options.durationMs) {
            const piece = Math.min(CHUNK.length, options.maxBytes - sent);
            sent += piece;
            if (!socket.write(piece === CHUNK.length ? CHUNK : CHUNK.subarray(0, piece))) {
              socket.once('drain', pump);
              return;
            }
          }
          socket.end();
        };
        pump();
      });
    });
  } finally {
    lateness.stop();
    socket.destroy();
  }
}
