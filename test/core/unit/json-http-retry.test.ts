import { expect } from 'chai';
import { createServer, type Server } from 'node:net';
import { JsonHttpClient, isMotusError } from '@motus/sdk';

/**
 * A server that drops the first connection of each request kind without answering,
 * as a kept-alive socket closed as idle just when a request goes out looks to the
 * client ("other side closed"); seen under load in the fault matrix.
 */
describe('JSON HTTP client: a socket closed before any answer', () => {
  let server: Server;
  let url: string;
  let connections = 0;

  before(async () => {
    server = createServer((socket) => {
      connections += 1;
      const drop = connections % 2 === 1;
      socket.once('data', () => {
        if (drop) socket.destroy();
        else socket.end('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\nconnection: close\r\n\r\n{"ok":true}');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  });
  after(() => server.close());

  it('sends a GET again once, and answers', async () => {
    connections = 0;
    const client = new JsonHttpClient({ url, token: 't', peer: 'the test server', badAnswerCode: 'MOTUS_E_INTERNAL' });
    expect(await client.call('GET', '/v1/x')).to.deep.equal({ ok: true });
    expect(connections).to.equal(2);
  });

  it('never sends a POST twice: the caller gets the coded error', async () => {
    connections = 0;
    const client = new JsonHttpClient({ url, token: 't', peer: 'the test server', badAnswerCode: 'MOTUS_E_INTERNAL' });
    const err = await client.call('POST', '/v1/x', {}).then(() => undefined, (e: unknown) => e);
    expect(isMotusError(err, 'MOTUS_E_AGENT_UNREACHABLE'), String(err)).to.equal(true);
    expect(connections).to.equal(1);
  });
});
