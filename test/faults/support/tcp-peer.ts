/**
 * The fault matrix's TCP peer, run as a process of its own inside the peer's network
 * namespace (`ip netns exec`, see netns.ts): it connects to the guest's echo service
 * (motus-tcp server), sends an 8-byte big-endian counter every period and checks that
 * every echo comes back exactly once and in order, as the guest kit's client does.
 * It reconnects only before its first connection: a connection that breaks is the
 * finding, reported once, and the process exits.
 *
 * Lines on stdout, one JSON object each:
 *   {"event":"connected","attempt":n}
 *   {"event":"stat","sent":n,"echoed":n}                  (every 500 ms)
 *   {"event":"error","reason":"...","sent":n,"echoed":n}  (then exit 1)
 *
 *   node tcp-peer.js <ipv4> <port> <period ms>
 */
import { connect, type Socket } from 'node:net';

const [host, portText, periodText] = process.argv.slice(2);
const port = Number(portText);
const period = Number(periodText);
const RETRY_MS = 250;

let sent = 0n;
let echoed = 0n;
let pending = Buffer.alloc(0);
let attempt = 0;
const say = (line: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(line, (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v))}\n`);
const fail = (reason: string) => {
  say({ event: 'error', reason, sent, echoed });
  process.exit(1);
};

function run(socket: Socket): void {
  socket.setNoDelay(true);
  const sender = setInterval(() => {
    const word = Buffer.alloc(8);
    word.writeBigUInt64BE(sent);
    sent++;
    socket.write(word);
  }, period);
  setInterval(() => say({ event: 'stat', sent, echoed }), 500);
  socket.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 8) {
      const got = pending.readBigUInt64BE(0);
      pending = pending.subarray(8);
      if (got !== echoed) fail(`out-of-sequence: expected ${echoed}, got ${got}`);
      echoed++;
    }
  });
  socket.on('error', (err: NodeJS.ErrnoException) => fail(`socket error ${err.code ?? err.message}`));
  socket.on('close', () => {
    clearInterval(sender);
    fail('closed');
  });
}

function tryConnect(): void {
  attempt++;
  const socket = connect({ host, port });
  // A guest still booting answers no ARP: give up on this SYN and try again.
  socket.setTimeout(3_000, () => socket.emit('error', new Error('connect timeout')));
  socket.once('connect', () => {
    socket.setTimeout(0);
    socket.removeAllListeners('timeout');
    socket.removeAllListeners('error');
    say({ event: 'connected', attempt });
    run(socket);
  });
  socket.once('error', () => {
    socket.destroy();
    setTimeout(tryConnect, RETRY_MS);
  });
}

if (!host || !Number.isInteger(port) || !(period > 0)) {
  process.stderr.write('usage: tcp-peer <ipv4> <port> <period ms>\n');
  process.exit(2);
}
tryConnect();
