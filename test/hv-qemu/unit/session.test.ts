import { expect } from 'chai';
import { MotusError, QmpClient, QmpSession, isMotusError, type QmpEvent } from '@motus/sdk';
import { FakeQmpServer, type ReceivedCommand } from '../support/fake-qmp-server.js';
import { sleep, tempDir, waitFor } from '../../support/system.js';

async function rejection(promise: Promise<unknown>): Promise<MotusError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof MotusError) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

describe('hv-qemu QMP session (fake server)', () => {
  let server: FakeQmpServer;
  let session: QmpSession | undefined;

  beforeEach(async () => {
    server = await FakeQmpServer.start();
  });

  afterEach(async () => {
    session?.close();
    session = undefined;
    await server.close();
  });

  it('reads the greeting and negotiates capabilities before anything else', async () => {
    session = await QmpSession.connect(server.path);
    expect(session.greeting.version).to.deep.equal({ major: 7, minor: 2, micro: 0, package: 'fake' });
    expect(server.received[0]?.execute).to.equal('qmp_capabilities');
    expect(server.received[0]?.id).to.be.a('string');
  });

  it('matches replies to commands by id, with many in flight answered out of order', async () => {
    const held: ReceivedCommand[] = [];
    server.handler = (command, peer) => {
      held.push(command);
      if (held.length === 5) for (const c of [...held].reverse()) peer.reply(c, { echo: c.arguments?.['n'] });
    };
    session = await QmpSession.connect(server.path);
    const calls = [0, 1, 2, 3, 4].map((n) => session!.execute<{ echo: number }>('echo', { n }));
    const replies = await Promise.all(calls);
    expect(replies.map((r) => r.echo)).to.deep.equal([0, 1, 2, 3, 4]);
    const ids = server.received.map((c) => c.id);
    expect(new Set(ids).size).to.equal(ids.length);
  });

  it('sends the QMP command shape {execute, arguments, id}', async () => {
    session = await QmpSession.connect(server.path);
    await session.execute('migrate', { uri: 'tcp:127.0.0.1:1' });
    await session.execute('query-status');
    expect(server.received[1]).to.have.keys('execute', 'arguments', 'id');
    expect(server.received[2]).to.have.keys('execute', 'id');
  });

  it('maps a QMP error reply to MOTUS_E_QMP_COMMAND with class and desc', async () => {
    server.handler = (command, peer) => peer.error(command, 'DeviceNotFound', 'Device foo has not been found');
    session = await QmpSession.connect(server.path);
    const err = await rejection(session.execute('device_del', { id: 'foo' }));
    expect(err.code).to.equal('MOTUS_E_QMP_COMMAND');
    expect(err.data).to.deep.include({ command: 'device_del', class: 'DeviceNotFound', desc: 'Device foo has not been found' });
    expect(err.message).to.include('Device foo has not been found');
  });

  it('times a command out with MOTUS_E_QMP_TIMEOUT, drops the late reply, and keeps working', async () => {
    let late: ReceivedCommand | undefined;
    server.handler = (command, peer) => {
      if (command.execute === 'slow') late = command;
      else peer.reply(command, 'fast');
    };
    session = await QmpSession.connect(server.path);
    const started = Date.now();
    const err = await rejection(session.execute('slow', undefined, { timeoutMs: 150 }));
    expect(err.code).to.equal('MOTUS_E_QMP_TIMEOUT');
    expect(err.data).to.deep.include({ command: 'slow', timeoutMs: 150 });
    expect(Date.now() - started).to.be.within(140, 2000);
    server.peers[0]!.reply(late!, 'too late');
    expect(await session.execute('quick')).to.equal('fast');
  });

  it('uses the session default timeout when a call gives none', async () => {
    server.handler = () => undefined;
    session = await QmpSession.connect(server.path, { commandTimeoutMs: 100 });
    expect((await rejection(session.execute('never'))).code).to.equal('MOTUS_E_QMP_TIMEOUT');
  });

  it('fails every pending command with MOTUS_E_QMP_DISCONNECTED when the connection drops, and later calls too', async () => {
    let count = 0;
    server.handler = (_command, peer) => {
      if (++count === 3) peer.socket.destroy();
    };
    session = await QmpSession.connect(server.path);
    let completed = false;
    session.events$.subscribe({ complete: () => (completed = true) });
    const errors = await Promise.all([1, 2, 3].map((n) => rejection(session!.execute('pending', { n }))));
    for (const err of errors) expect(err.code).to.equal('MOTUS_E_QMP_DISCONNECTED');
    expect(errors.map((e) => e.data['command'])).to.deep.equal(['pending', 'pending', 'pending']);
    expect(completed).to.equal(true);
    expect(session.isOpen).to.equal(false);
    expect((await session.closed).code).to.equal('MOTUS_E_QMP_DISCONNECTED');
    expect((await rejection(session.execute('after'))).code).to.equal('MOTUS_E_QMP_DISCONNECTED');
  });

  it('delivers asynchronous events in order, interleaved with replies in one chunk', async () => {
    server.handler = (command, peer) => {
      const event = (name: string, data?: Record<string, unknown>) =>
        `${JSON.stringify({ timestamp: { seconds: 1_700_000_000, microseconds: 1 }, event: name, ...(data ? { data } : {}) })}\r\n`;
      peer.sendRaw(event('STOP') + `${JSON.stringify({ return: {}, id: command.id })}\r\n` + event('MIGRATION', { status: 'active' }) + event('RESUME'));
    };
    session = await QmpSession.connect(server.path);
    const seen: QmpEvent[] = [];
    session.events$.subscribe((e) => seen.push(e));
    await session.execute('stop');
    await waitFor('three events', () => (seen.length === 3 ? true : undefined), 2000, 10);
    expect(seen.map((e) => e.event)).to.deep.equal(['STOP', 'MIGRATION', 'RESUME']);
    expect(seen[1]!.data).to.deep.equal({ status: 'active' });
    expect(seen[0]!.timestampUs).to.equal(1_700_000_000_000_001);
  });

  it('gives up with MOTUS_E_QMP_PROTOCOL when the server sends bytes that are not QMP', async () => {
    server.handler = (_command, peer) => peer.sendRaw('this is not json\r\n');
    session = await QmpSession.connect(server.path);
    const err = await rejection(session.execute('anything'));
    expect(err.code).to.equal('MOTUS_E_QMP_PROTOCOL');
    expect(err.data).to.deep.include({ kind: 'invalid-json', command: 'anything' });
    expect((await rejection(session.execute('after'))).code).to.equal('MOTUS_E_QMP_DISCONNECTED');
  });

  it('fails to connect with MOTUS_E_QMP_TIMEOUT when no greeting comes', async () => {
    server.greet = false;
    const err = await rejection(QmpSession.connect(server.path, { connectTimeoutMs: 200 }));
    expect(err.code).to.equal('MOTUS_E_QMP_TIMEOUT');
  });

  it('fails to connect with MOTUS_E_QMP_COMMAND when capability negotiation is refused', async () => {
    server.refuseCapabilities = true;
    const err = await rejection(QmpSession.connect(server.path));
    expect(err.code).to.equal('MOTUS_E_QMP_COMMAND');
    expect(err.data).to.deep.include({ command: 'qmp_capabilities', class: 'CommandNotFound' });
  });

  it('fails to connect with MOTUS_E_QMP_DISCONNECTED when nothing listens', async () => {
    const dir = tempDir('no-qmp');
    try {
      const err = await rejection(QmpSession.connect(`${dir.path}/absent.sock`));
      expect(err.code).to.equal('MOTUS_E_QMP_DISCONNECTED');
    } finally {
      dir.remove();
    }
  });

  it('offers typed wrappers that send the QMP command names and arguments', async () => {
    server.handler = (command, peer) => {
      if (command.execute === 'query-status') peer.reply(command, { status: 'running', running: true, singlestep: false });
      else peer.reply(command);
    };
    const client = await QmpClient.connect(server.path);
    try {
      expect((await client.queryStatus()).status).to.equal('running');
      await client.migrateSetCapabilities({ events: true, 'auto-converge': false });
      await client.migrateSetCapabilities({});
      await client.migrateSetParameters({ 'max-bandwidth': 1000 });
      await client.migrateIncoming('tcp:127.0.0.1:0');
      await client.migrate('tcp:127.0.0.1:5');
      await client.migrateCancel();
      await client.migrateContinue('pre-switchover');
      await client.cont();
      await client.stop();
      await client.announceSelf();
      await client.quit();
      const sent = server.received.slice(1).map((c) => [c.execute, c.arguments]);
      expect(sent).to.deep.equal([
        ['query-status', undefined],
        ['migrate-set-capabilities', { capabilities: [{ capability: 'events', state: true }, { capability: 'auto-converge', state: false }] }],
        ['migrate-set-parameters', { 'max-bandwidth': 1000 }],
        ['migrate-incoming', { uri: 'tcp:127.0.0.1:0' }],
        ['migrate', { uri: 'tcp:127.0.0.1:5' }],
        ['migrate_cancel', undefined],
        ['migrate-continue', { state: 'pre-switchover' }],
        ['cont', undefined],
        ['stop', undefined],
        ['announce-self', { initial: 50, max: 550, rounds: 5, step: 100 }],
        ['quit', undefined],
      ]);
    } finally {
      client.close();
    }
    await sleep(10);
    expect(isMotusError(await client.closed)).to.equal(true);
  });
});
