import { expect } from 'chai';
import { request } from 'node:http';
import { MotusError, REDACTED, redact, redactText, registerSecret, registerSecretsIn } from '@motus/sdk';
import { AuthFailureLimiter, JsonHttpServer, MAX_BODY_BYTES, createLogger, decideEncryption, type AgentFacts } from '@motus/core';

function facts(name: string, ready: boolean | undefined, reason?: string): AgentFacts {
  return {
    name,
    migrationAddress: '127.0.0.1',
    memoryTotalMiB: 1024,
    memoryUsedMiB: 0,
    cpus: 1,
    hypervisor: { kind: 'qemu', version: '10', accelerator: 'tcg', acceleratorReason: '' },
    vms: [],
    plugins: {},
    storage: [],
    ...(ready === undefined ? {} : { migrationTls: { ready, ...(reason ? { reason } : {}) } }),
  };
}

function send(url: string, path: string, options: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { method: options.method ?? 'GET', headers: options.headers ?? {} }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, headers: res.headers }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

describe('security: redaction layer', () => {
  it('blanks secret-named fields at any depth and keeps the rest', () => {
    const out = redact({ user: 'motus', chap: { user: 'motus', secret: 'chap-secret-1' }, list: [{ password: 'pw-123456' }], token: 't-abc', key: '0x1234' });
    expect(out).to.deep.equal({ user: 'motus', chap: { user: 'motus', secret: REDACTED }, list: [{ password: REDACTED }], token: 't-abc', key: '0x1234' });
  });

  it('scrubs registered secrets, API tokens, bearer headers, PEM keys and URL passwords from any text', () => {
    registerSecret('s3cret-value-42');
    registerSecretsIn({ datastores: [{ chap: { user: 'u', secret: 'another-chap-secret' } }] });
    const text = redactText(
      'login as u/s3cret-value-42 failed; another-chap-secret; Authorization: Bearer abc.def; token mt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA; iscsi://user%pw@10.0.0.1/iqn/1 -----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----',
    );
    for (const secret of ['s3cret-value-42', 'another-chap-secret', 'abc.def', 'mt_AAAA', '%pw@', 'MIGH']) expect(text).not.to.include(secret);
    expect(text).to.include('iscsi://user:[redacted]@10.0.0.1/iqn/1');
    expect(redact({ error: { message: 'CHAP with s3cret-value-42 refused' } })).to.deep.equal({ error: { message: `CHAP with ${REDACTED} refused` } });
  });

  it('writes log lines through the redaction layer (at error level, which every MOTUS_LOG_LEVEL prints)', () => {
    const lines: string[] = [];
    registerSecret('log-secret-777');
    createLogger({}, { write: (l) => lines.push(l) }).error('login with log-secret-777', { chap: { secret: 'x' }, token: 'id-1' });
    expect(lines.join('')).not.to.include('log-secret-777');
    expect(JSON.parse(lines[0]!).chap.secret).to.equal(REDACTED);
  });
});

describe('security: auth failure limiter', () => {
  it('refuses an address after maxFailures in the window, until the oldest failure leaves it; other addresses are free', () => {
    let now = 0;
    const limiter = new AuthFailureLimiter({ maxFailures: 3, windowSeconds: 10 }, () => now);
    for (let i = 0; i < 3; i++) {
      expect(limiter.retryAfterSeconds('10.0.0.1')).to.equal(0);
      limiter.recordFailure('10.0.0.1');
      now += 1000;
    }
    expect(limiter.retryAfterSeconds('10.0.0.1')).to.equal(7);
    expect(limiter.retryAfterSeconds('10.0.0.2')).to.equal(0);
    now = 10_001;
    expect(limiter.retryAfterSeconds('10.0.0.1')).to.equal(0);
  });
});

describe('security: migration encryption policy', () => {
  it('encrypts when both hosts can (opportunistic, required), never when disabled', () => {
    expect(decideEncryption('opportunistic', facts('a', true), facts('b', true))).to.equal(true);
    expect(decideEncryption('required', facts('a', true), facts('b', true))).to.equal(true);
    expect(decideEncryption('disabled', facts('a', true), facts('b', true))).to.equal(false);
    expect(decideEncryption('opportunistic', facts('a', true), facts('b', false, 'no certificate'))).to.equal(false);
    expect(decideEncryption('opportunistic', facts('a', undefined), facts('b', true))).to.equal(false);
  });

  it('refuses under required with a coded error naming the host and why', () => {
    try {
      decideEncryption('required', facts('a', true), facts('c', false, 'host c is kept out of encrypted migration'));
      expect.fail('required with a host lacking credentials must be refused');
    } catch (err) {
      expect(err).to.be.instanceOf(MotusError);
      expect((err as MotusError).code).to.equal('MOTUS_E_TLS_UNAVAILABLE');
      expect((err as MotusError).data.hosts).to.deep.equal(['c']);
      expect((err as MotusError).message).to.include('host c is kept out of encrypted migration');
    }
  });
});

describe('security: API limits (JsonHttpServer)', () => {
  let api: JsonHttpServer;
  let url: string;
  const quiet = createLogger({}, { write: () => undefined });

  before(async () => {
    api = new JsonHttpServer('the-token-123', quiet, { authFailureLimits: { maxFailures: 3, windowSeconds: 60 } });
    api.route('POST', '/v1/echo', async ({ body }) => body).route('GET', '/v1/ping', async () => ({ ok: true }));
    url = await api.listen('127.0.0.1:0');
  });
  after(() => api.close());

  const auth = { authorization: 'Bearer the-token-123', 'content-type': 'application/json' };

  it('answers 413 to a body over the limit, by its declared length or as it arrives', async () => {
    const declared = await send(url, '/v1/echo', { method: 'POST', headers: { ...auth, 'content-length': String(MAX_BODY_BYTES + 1) }, body: '{}' }).catch((err: Error) => ({ status: -1, body: err.message, headers: {} }));
    expect(declared.status).to.equal(413);
    expect(JSON.parse(declared.body).error.code).to.equal('MOTUS_E_PAYLOAD_TOO_LARGE');
    const big = Buffer.alloc(MAX_BODY_BYTES + 10, 0x20);
    const streamed = await send(url, '/v1/echo', { method: 'POST', headers: { ...auth, 'transfer-encoding': 'chunked' }, body: big }).catch((err: Error) => ({ status: -1, body: err.message, headers: {} }));
    expect(streamed.status, streamed.body).to.equal(413);
    expect((await send(url, '/v1/ping', { headers: auth })).status).to.equal(200);
  });

  it('answers 400 naming the body or the query parameter at fault', async () => {
    const bad = await send(url, '/v1/echo', { method: 'POST', headers: auth, body: '{"a":' });
    expect(bad.status).to.equal(400);
    expect(JSON.parse(bad.body).error.data.field).to.equal('(body)');
    const query = await send(url, '/v1/ping?debug=1', { headers: auth });
    expect(query.status).to.equal(400);
    expect(JSON.parse(query.body).error.data.field).to.equal('debug');
  });

  it('answers 429 with Retry-After after repeated wrong tokens, even to the right token, then keeps serving others', async () => {
    for (let i = 0; i < 3; i++) expect((await send(url, '/v1/ping', { headers: { authorization: `Bearer wrong-${i}` } })).status).to.equal(401);
    const limited = await send(url, '/v1/ping', { headers: auth });
    expect(limited.status).to.equal(429);
    expect(JSON.parse(limited.body).error.code).to.equal('MOTUS_E_RATE_LIMITED');
    expect(Number(limited.headers['retry-after'])).to.be.greaterThan(0);
  });
});
