import { expect } from 'chai';
import {
  INITIAL_DECODER_STATE,
  QmpLineDecoder,
  decodeChunk,
  decodeLine,
  encodeCommand,
  type QmpDecodeResult,
  type QmpMessage,
} from '@motus/sdk';
import { toMigrationProgress } from '@motus/hv-qemu';
import { chunks, qmpTraffic } from '../support/fixture.js';
import { prng, randomBytes } from '../../support/index.js';

const ERROR_KINDS = ['invalid-utf8', 'invalid-json', 'not-an-object', 'unknown-shape', 'line-too-long'];

function decodeAll(parts: Uint8Array[], maxLineBytes?: number): QmpDecodeResult[] {
  const decoder = new QmpLineDecoder(maxLineBytes);
  return parts.flatMap((p) => decoder.push(p));
}

function messages(results: QmpDecodeResult[]): QmpMessage[] {
  return results.map((r) => {
    if (!r.ok) throw new Error(`unexpected decode error ${r.error.kind}: ${r.error.detail}`);
    return r.message;
  });
}

function lines(text: string): number {
  return text.split('\n').filter((l) => l.trim() !== '').length;
}

describe('hv-qemu QMP codec', () => {
  describe('recorded traffic from QEMU', () => {
    const fixture = qmpTraffic();

    it(`decodes every message QEMU ${fixture.qemuVersion} sent, chunk by chunk as the socket delivered them`, () => {
      for (const side of ['source', 'destination'] as const) {
        const parts = chunks(side);
        const decoded = messages(decodeAll(parts));
        expect(decoded).to.have.length(lines(Buffer.concat(parts).toString('utf8')));
        const greeting = decoded[0];
        expect(greeting?.kind).to.equal('greeting');
        if (greeting?.kind === 'greeting') {
          expect(`${greeting.version.major}.${greeting.version.minor}.${greeting.version.micro}`).to.equal(fixture.qemuVersion);
          expect(greeting.capabilities).to.include('oob');
        }
      }
    });

    it('reads replies with string and numeric ids, errors with class and desc, and timestamped events', () => {
      const decoded = messages(decodeAll(chunks('source')));
      const numeric = decoded.find((m) => m.kind === 'return' && m.id === 42);
      expect(numeric, 'reply to id 42').to.not.equal(undefined);
      expect((numeric as { value: unknown[] }).value).to.be.an('array').with.length(1);
      const notFound = decoded.find((m) => m.kind === 'error' && m.id === 'rec-4');
      expect(notFound).to.deep.include({ kind: 'error', errorClass: 'CommandNotFound' });
      const events = decoded.filter((m) => m.kind === 'event');
      expect(events.map((e) => (e.kind === 'event' ? e.event : ''))).to.include.members(['STOP', 'RESUME', 'MIGRATION', 'MIGRATION_PASS', 'SHUTDOWN']);
      for (const e of events) if (e.kind === 'event') expect(e.timestampUs).to.be.greaterThan(1.6e15);
      const shutdown = events.find((e) => e.kind === 'event' && e.event === 'SHUTDOWN');
      expect(shutdown).to.deep.include({ data: { guest: false, reason: 'host-qmp-quit' } });
    });

    it('maps the recorded query-migrate answers to MigrationProgress', () => {
      const decoded = messages(decodeAll(chunks('source')));
      const infos = decoded.flatMap((m) => (m.kind === 'return' && typeof m.value === 'object' && m.value !== null && 'ram' in m.value ? [m.value] : []));
      expect(infos.length).to.be.at.least(2);
      const final = toMigrationProgress(infos[infos.length - 1] as Parameters<typeof toMigrationProgress>[0]);
      expect(final.status).to.equal('completed');
      expect(final.remainingBytes).to.equal(0);
      // Guest RAM (64 MiB) plus the ROMs and video memory QEMU migrates with it.
      expect(final.totalBytes).to.be.at.least(64 * 1024 * 1024);
      expect(final.transferredBytes).to.be.greaterThan(0);
      expect(final.round).to.be.at.least(1);
      expect(final.downtimeMs).to.be.a('number');
      expect(final.setupTimeMs).to.be.a('number');
      expect(final.throughputBytesPerSec).to.be.greaterThan(0);
      const dstDecoded = messages(decodeAll(chunks('destination')));
      const listening = dstDecoded.find((m) => m.kind === 'return' && typeof m.value === 'object' && m.value !== null && 'socket-address' in m.value);
      expect(listening, 'destination query-migrate with socket-address').to.not.equal(undefined);
    });

    it('gives the same messages however the stream is split: at every byte offset, and byte by byte', () => {
      const whole = Buffer.concat(chunks('source'));
      const expected = decodeAll([whole]);
      for (let cut = 0; cut <= whole.length; cut++) {
        expect(decodeAll([whole.subarray(0, cut), whole.subarray(cut)]), `split at ${cut}`).to.deep.equal(expected);
      }
      const bytes = Array.from({ length: whole.length }, (_, i) => whole.subarray(i, i + 1));
      expect(decodeAll(bytes)).to.deep.equal(expected);
    });

    it('gives the same messages for random chunkings', () => {
      const whole = Buffer.concat(chunks('destination'));
      const expected = decodeAll([whole]);
      const random = prng(7);
      for (let round = 0; round < 200; round++) {
        const parts: Buffer[] = [];
        for (let at = 0; at < whole.length; ) {
          const size = 1 + Math.floor(random() * 64);
          parts.push(whole.subarray(at, at + size));
          at += size;
        }
        expect(decodeAll(parts)).to.deep.equal(expected);
      }
    });
  });

  describe('malformed input', () => {
    it('never throws on random garbage and reports only typed errors', () => {
      const random = prng(1234);
      for (let round = 0; round < 500; round++) {
        const garbage = randomBytes(random, Math.floor(random() * 300));
        // Sprinkle line feeds so many lines complete.
        for (let i = 0; i < garbage.length; i += 1 + Math.floor(random() * 40)) garbage[i] = 0x0a;
        const results = decodeAll([garbage]);
        for (const r of results) {
          if (!r.ok) {
            expect(ERROR_KINDS).to.include(r.error.kind);
            expect(r.error.excerpt.length).to.be.at.most(200);
          }
        }
      }
    });

    it('types each kind of bad line', () => {
      const cases: Array<[string | Buffer, string]> = [
        [Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), 'invalid-utf8'],
        ['{"return": {}', 'invalid-json'],
        ['{"return": {}, "id": "x"}}', 'invalid-json'],
        ['[1, 2]', 'not-an-object'],
        ['42', 'not-an-object'],
        ['"text"', 'not-an-object'],
        ['null', 'not-an-object'],
        ['true', 'not-an-object'],
        ['{"hello": 1}', 'unknown-shape'],
        ['{"error": {"class": "GenericError"}, "id": 1}', 'unknown-shape'],
        ['{"error": "bad", "id": 1}', 'unknown-shape'],
        ['{"return": {}, "id": {"nested": true}}', 'unknown-shape'],
        ['{"event": 7}', 'unknown-shape'],
        ['{"event": "STOP", "data": [1]}', 'unknown-shape'],
        ['{"QMP": 1}', 'unknown-shape'],
      ];
      for (const [line, kind] of cases) {
        const result = decodeLine(typeof line === 'string' ? Buffer.from(line) : line);
        expect(result, String(line)).to.not.equal(undefined);
        expect(result!.ok, String(line)).to.equal(false);
        if (result && !result.ok) expect(result.error.kind, String(line)).to.equal(kind);
      }
    });

    it('keeps decoding after a bad line', () => {
      const results = decodeAll([Buffer.from('garbage\r\n{"return": {}, "id": 1}\r\n')]);
      expect(results).to.have.length(2);
      expect(results[0]!.ok).to.equal(false);
      expect(results[1]).to.deep.equal({ ok: true, message: { kind: 'return', id: 1, value: {} } });
    });

    it('holds a truncated message until its end arrives, and yields nothing for it before', () => {
      const decoder = new QmpLineDecoder();
      expect(decoder.push(Buffer.from('{"return": {"status": "runn'))).to.deep.equal([]);
      expect(decoder.pendingBytes).to.equal(27);
      expect(decoder.push(Buffer.from('ing"}, "id": "a"}\r'))).to.deep.equal([]);
      expect(decoder.push(Buffer.from('\n'))).to.deep.equal([{ ok: true, message: { kind: 'return', id: 'a', value: { status: 'running' } } }]);
      expect(decoder.pendingBytes).to.equal(0);
    });

    it('accepts LF and CRLF, several messages per chunk, and skips blank lines', () => {
      const results = decodeAll([Buffer.from('{"return": 1, "id": 1}\n\r\n\n{"return": 2, "id": 2}\r\n   \n{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 5}}\n')]);
      expect(messages(results)).to.deep.equal([
        { kind: 'return', id: 1, value: 1 },
        { kind: 'return', id: 2, value: 2 },
        { kind: 'event', event: 'STOP', data: {}, timestampUs: 1_000_005 },
      ]);
    });

    it('drops an over-long line with one error, then resynchronises at its end', () => {
      const decoder = new QmpLineDecoder(1024);
      const results: QmpDecodeResult[] = [];
      results.push(...decoder.push(Buffer.from('{"return": "')));
      for (let i = 0; i < 10; i++) results.push(...decoder.push(Buffer.alloc(500, 0x61)));
      expect(decoder.pendingBytes).to.equal(0);
      results.push(...decoder.push(Buffer.from('"}\r\n{"return": {}, "id": 9}\r\n')));
      expect(results).to.have.length(2);
      expect(results[0]!.ok === false && results[0]!.error.kind).to.equal('line-too-long');
      expect(results[1]).to.deep.equal({ ok: true, message: { kind: 'return', id: 9, value: {} } });
      const single = decodeAll([Buffer.concat([Buffer.alloc(2000, 0x20), Buffer.from('\n{"return": 3}\n')])], 1024);
      expect(single.map((r) => (r.ok ? r.message.kind : r.error.kind))).to.deep.equal(['line-too-long', 'return']);
    });

    it('decodes a huge message under the limit', () => {
      const big = 'x'.repeat(4 * 1024 * 1024);
      const results = decodeAll([Buffer.from(`{"return": "${big}", "id": 1}\r\n`)]);
      expect(results).to.have.length(1);
      expect(results[0]!.ok && results[0]!.message.kind === 'return' && (results[0]!.message.value as string).length).to.equal(big.length);
    });

    it('never reads past the chunk it is given, even when the underlying memory goes on', () => {
      const memory = Buffer.from('{"return": {}, "id": 1}\r\n{"return": {}, "id": 2}\r\n');
      const firstLineWithoutLf = memory.subarray(0, memory.indexOf('\n'));
      const { state, results } = decodeChunk(INITIAL_DECODER_STATE, firstLineWithoutLf);
      expect(results).to.deep.equal([]);
      expect(state.pending.length).to.equal(firstLineWithoutLf.length);
      const inner = new Uint8Array(memory.buffer, memory.byteOffset + 2, 5);
      expect(decodeChunk(INITIAL_DECODER_STATE, inner).results).to.deep.equal([]);
    });

    it('keeps its state immutable: feeding the same state twice gives the same results', () => {
      const first = decodeChunk(INITIAL_DECODER_STATE, Buffer.from('{"return": '));
      const a = decodeChunk(first.state, Buffer.from('1}\n'));
      const b = decodeChunk(first.state, Buffer.from('1}\n'));
      expect(a.results).to.deep.equal(b.results);
    });
  });

  describe('encoding', () => {
    it('writes one CRLF-terminated JSON line per command, omitting absent arguments', () => {
      expect(encodeCommand({ execute: 'query-status', id: 'motus-1' })).to.deep.equal({ ok: true, line: '{"execute":"query-status","id":"motus-1"}\r\n' });
      const migrate = encodeCommand({ execute: 'migrate', arguments: { uri: 'tcp:127.0.0.1:4444' }, id: 2 });
      expect(migrate.ok && JSON.parse(migrate.line)).to.deep.equal({ execute: 'migrate', arguments: { uri: 'tcp:127.0.0.1:4444' }, id: 2 });
    });

    it('fails without throwing on values JSON cannot carry', () => {
      const result = encodeCommand({ execute: 'x', arguments: { n: 1n }, id: 1 });
      expect(result.ok).to.equal(false);
    });
  });
});
