/**
 * Encrypted migration, seen from the wire, and secrets, seen from everything
 * Motus writes.
 *
 * Site 1 (`migration.encryption: required`, MOTUS_LOG_LEVEL=debug): an iSCSI
 * datastore on a real tgtd whose target asks for mutual CHAP, which the agents'
 * own sessions log in with; a guest writing a marker string into every page of
 * its working set migrates host-a → host-b while dumpcap captures everything sent
 * to host-b's migration address. The marker must not be in the capture. A
 * migration to host-c (no migration credentials) is refused before anything
 * starts. Then every log, event, audit record, task, API answer and state file
 * is scanned for the CHAP secrets, the API tokens, the agent (enrolment) token and
 * private key material.
 *
 * Site 2 (`disabled`), the control: the same guest and capture, and the marker
 * is there — so the test can see plaintext guest memory when there is some.
 */
import { expect } from 'chai';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { MotusError, MotusClient, type MigrationEvent, type SiteEvent, type VmSpec } from '@motus/sdk';
import { guestKit, migrateAndFollow, parseGuestSerial, qemuPidsOf, requireCommand, startSite, tempDir, vmInfoOf, waitFor, type TestSite } from '../../support/index.js';
import { LoopbackCapture, tshark } from '../../support/packet-capture.js';
import { startTgt, type Tgt } from '../../storage-iscsi/support/tgt.js';
import { rawRequest } from '../support/https.js';

const RUN = `${process.pid}${Date.now().toString(36)}`;
const MARKER = `MOTUSMARK${RUN}`;
const CHAP = { user: 'motus-initiator', secret: `chapSecret${RUN}x` };
const MUTUAL = { user: 'motus-target', secret: `mutualSecret${RUN}y` };
const TARGET = 'iqn.2026-01.org.motus.test:secure1';
// Own loopback addresses for the hosts' migration streams: the capture filter takes them and nothing else.
const NET = 40 + (process.pid % 200);

function markerSpec(): VmSpec {
  const kit = guestKit();
  return {
    name: 'vmtls',
    memoryMiB: 128,
    vcpus: 1,
    boot: { kind: 'kernel', kernel: kit.kernel, initrd: kit.initrd, cmdline: kit.cmdline({ dirtyMBps: 4, workingSetMiB: 16, marker: MARKER }) },
  };
}

function siteYaml(policy: 'required' | 'disabled', subnet: number, plugins = ''): string {
  return `
site: tls-${policy}
migration:
  encryption: ${policy}
  maxBandwidthMiBps: 128
hosts:
  - { name: host-a, memoryMiB: 1024, migrationAddress: 127.${NET}.${subnet}.1 }
  - { name: host-b, memoryMiB: 1024, migrationAddress: 127.${NET}.${subnet}.2 }
  - { name: host-c, memoryMiB: 1024, migrationAddress: 127.${NET}.${subnet}.3, migrationTls: false }
plugins:
  - package: '@motus/hv-qemu'
${plugins}`;
}

/** How many times `needle` is in the file (read whole: captures of a 128 MiB guest stay small). */
function occurrences(file: string, needle: string): number {
  const data = readFileSync(file);
  const bytes = Buffer.from(needle, 'latin1');
  let n = 0;
  for (let at = data.indexOf(bytes); at >= 0; at = data.indexOf(bytes, at + 1)) n++;
  return n;
}

/** Boots the marker guest on host-a and waits until its dirtier has written the marker everywhere. */
async function startMarkerGuest(site: TestSite): Promise<void> {
  await site.client.startVm(markerSpec(), 'host-a');
  const vm = await vmInfoOf(site.client, 'vmtls');
  await waitFor('the marker dirtier to run and the guest to beat', () => {
    const serial = parseGuestSerial(readFileSync(vm.serialLog!, 'latin1'));
    if (serial.errors.length > 0) throw new Error(`guest error: ${serial.errors.join('; ')}`);
    return serial.dirtier.length > 0 && serial.heartbeats.length >= 5 ? true : undefined;
  }, 300_000, 250);
}

/** Migrates vmtls host-a → host-b under a capture of host-b's migration address. */
async function capturedMigration(site: TestSite, subnet: number, pcap: string): Promise<{ events: MigrationEvent[]; port: number }> {
  const capture = await LoopbackCapture.start(pcap, `host 127.${NET}.${subnet}.2`);
  let events: MigrationEvent[];
  try {
    events = await migrateAndFollow(site.client, 'vmtls', 'host-b');
  } finally {
    await capture.stop();
  }
  const last = events.at(-1)!;
  expect(last.type, JSON.stringify(events.filter((e) => e.type !== 'progress'))).to.equal('completed');
  const prepared = events.find((e): e is Extract<MigrationEvent, { type: 'prepared' }> => e.type === 'prepared')!;
  const port = Number(/:(\d+)$/.exec(prepared.uri)![1]);
  return { events, port };
}

describe('encrypted migration: no plaintext guest memory on the wire, no secret in anything Motus writes', function () {
  this.timeout(1_200_000);
  const dir = tempDir('tls-capture');
  let tgt: Tgt | undefined;
  let site: TestSite | undefined;
  let control: TestSite | undefined;
  let viewerToken = '';
  const siteEvents: SiteEvent[] = [];
  const stopEvents = new AbortController();
  let migrationId = '';

  before(async () => {
    requireCommand('qemu-system-x86_64', 'qemu-system-x86');
    requireCommand('tshark', 'tshark');
    requireCommand('tgtd', 'tgt');
    guestKit();
    tgt = await startTgt();
    await tgt.addTarget({ iqn: TARGET, lunsMiB: [8], chap: CHAP, mutualChap: MUTUAL });
  });

  after(async () => {
    stopEvents.abort();
    await site?.stop();
    await control?.stop();
    await tgt?.stop();
    dir.remove();
  });

  describe('site 1: encryption required, mutual CHAP datastore, debug logs', () => {
    before(async () => {
      site = await startSite(
        siteYaml(
          'required',
          1,
          `  - package: '@motus/storage-iscsi'
    config:
      datastores:
        - name: secure1
          portal: '${tgt!.portal}'
          target: '${TARGET}'
          hosts: [host-a, host-b]
          chap: { user: '${CHAP.user}', secret: '${CHAP.secret}' }
          mutualChap: { user: '${MUTUAL.user}', secret: '${MUTUAL.secret}' }
      factsRefreshMs: 1000
`,
        ),
        { MOTUS_LOG_LEVEL: 'debug' },
      );
      // Every site event from now on, for the scan.
      void (async () => {
        try {
          for await (const event of site!.client.events(stopEvents.signal)) siteEvents.push(event);
        } catch {
          /* aborted at the end */
        }
      })();
      await site.client.addUser('vera', 'viewer');
      viewerToken = (await site.client.createToken('vera', 'scan')).token;
    });

    it('logs the agents in to the CHAP-protected target (the datastore is accessible from host-a and host-b)', async () => {
      await waitFor('secure1 accessible on host-a and host-b', async () => {
        const hosts = await site!.client.hosts();
        const ok = ['host-a', 'host-b'].every((name) => {
          const facts = hosts.find((h) => h.name === name)?.plugins['@motus/storage-iscsi'] as { datastores?: Array<{ name: string; accessible: boolean }> } | undefined;
          return facts?.datastores?.some((d) => d.name === 'secure1' && d.accessible);
        });
        return ok ? true : undefined;
      }, 120_000, 500);
      const views = await site!.client.pluginCall<Array<{ name: string; luns: unknown[] }>>('@motus/storage-iscsi', 'datastores', {});
      expect(views.find((v) => v.name === 'secure1')!.luns).to.have.length(1);
    });

    it('refuses a migration to a host without migration credentials, before anything starts (MOTUS_E_TLS_UNAVAILABLE)', async () => {
      await startMarkerGuest(site!);
      const hosts = await site!.client.hosts();
      expect(hosts.find((h) => h.name === 'host-c')!.migrationTls?.ready).to.equal(false);
      const err = await site!.client.migrate({ vm: 'vmtls', destination: 'host-c' }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, 'the migration must be refused').to.be.instanceOf(MotusError);
      expect((err as MotusError).code).to.equal('MOTUS_E_TLS_UNAVAILABLE');
      expect((err as MotusError).message).to.include('host-c').and.include('encrypted migration');
      console.log(`      refused: ${(err as MotusError).message}`);
      const vm = await vmInfoOf(site!.client, 'vmtls');
      expect([vm.host, vm.state]).to.deep.equal(['host-a', 'running']);
      expect(await qemuPidsOf('vmtls'), 'no QEMU was started on host-c').to.have.length(1);
    });

    it('migrates host-a → host-b encrypted: the capture holds the stream and the TLS handshake, never the marker', async () => {
      const pcap = join(dir.path, 'required.pcap');
      const { events, port } = await capturedMigration(site!, 1, pcap);
      migrationId = events[0]!.migrationId;
      const prepared = events.find((e) => e.type === 'prepared') as Extract<MigrationEvent, { type: 'prepared' }>;
      expect(prepared.encrypted).to.equal(true);
      const bytes = statSync(pcap).size;
      // At least the dirtier's 16 MiB working set went through what the capture saw.
      expect(bytes, 'the capture holds the migration stream').to.be.greaterThan(16 << 20);
      // The capture also holds the link probe the agents run before the migration (to another port of the same
      // address, plaintext filler): only the migration port's connections must open with a ClientHello.
      const hello = await tshark(['-r', pcap, '-d', `tcp.port==${port},tls`, '-Y', `tcp.port == ${port} && tls.handshake.type == 1`, '-T', 'fields', '-e', 'frame.number'], 300_000);
      expect(hello.trim(), 'a TLS ClientHello at the start of the stream').not.to.equal('');
      expect(occurrences(pcap, MARKER), `marker ${MARKER} in the capture of an encrypted migration`).to.equal(0);
      console.log(`      required: ${(bytes / 2 ** 20).toFixed(1)} MiB captured on port ${port}, marker found 0 times`);
    });

    it('leaves no secret in logs, events, audit trail, tasks, API answers or state files', async () => {
      const client = site!.client;
      const stateDir = site!.stateDir;
      const admin = (JSON.parse(readFileSync(join(stateDir, 'client.json'), 'utf8')) as { token: string }).token;
      const agentToken = readFileSync(join(stateDir, 'server', 'agent-token'), 'utf8').trim();
      // Files that exist to hold a secret: the tokens, the keys, the client file, and the test's own site file.
      const holders = (path: string) =>
        /(^|\/)(agent-token|api-token|client\.json|site\.yaml)$/.test(path) || /-key\.pem$|(^|\/)key\.pem$/.test(path);
      const keyBodies: string[] = [];
      const files: string[] = [];
      const walk = (d: string) => {
        for (const name of readdirSync(d)) {
          const path = join(d, name);
          const st = statSync(path);
          if (st.isDirectory()) walk(path);
          else if (st.isFile()) files.push(path);
        }
      };
      walk(stateDir);
      for (const file of files.filter((f) => /key\.pem$/.test(f))) {
        const body = readFileSync(file, 'utf8').split('\n').filter((l) => l && !l.startsWith('-----'));
        keyBodies.push(body.join('').slice(0, 48));
      }
      expect(keyBodies.length, 'key files found in the state folder').to.be.greaterThan(3);
      const secrets: Record<string, string> = {
        'CHAP secret': CHAP.secret,
        'mutual CHAP secret': MUTUAL.secret,
        'admin API token': admin,
        'viewer API token': viewerToken,
        'agent (enrolment) token': agentToken,
        ...Object.fromEntries(keyBodies.map((b, i) => [`private key ${i + 1}`, b])),
      };
      const found: string[] = [];
      const scan = (where: string, text: string) => {
        for (const [what, secret] of Object.entries(secrets)) if (text.includes(secret)) found.push(`${what} in ${where}`);
        if (/PRIVATE KEY-----/.test(text)) found.push(`a PEM private key in ${where}`);
      };
      stopEvents.abort();
      // What Motus wrote: its output, every file but the holders (logs, database, QEMU run files), and what the API answers.
      scan('motusd output (stdout/stderr)', site!.output());
      const scanned: string[] = [];
      for (const file of files.filter((f) => !holders(relative(stateDir, f)))) {
        scan(relative(stateDir, file), readFileSync(file).toString('latin1'));
        scanned.push(relative(stateDir, file));
      }
      expect(scanned.some((f) => /server\.log$/.test(f)) && scanned.some((f) => /agent\.log$/.test(f)) && scanned.some((f) => /motus\.db/.test(f)), scanned.join(', ')).to.equal(true);
      const debugLines = readFileSync(join(stateDir, 'agents', 'host-a', 'agent.log.json'), 'utf8').split('\n').filter((l) => l.includes('"level":"debug"')).length;
      expect(debugLines, 'the agents logged at debug level').to.be.greaterThan(0);
      scan('site events (/v1/events)', JSON.stringify(siteEvents));
      expect(siteEvents.some((e) => e.stream === 'migration')).to.equal(true);
      const history: MigrationEvent[] = [];
      for await (const e of client.migrationEvents(migrationId)) history.push(e);
      scan('migration event history', JSON.stringify(history));
      scan('audit trail (json)', JSON.stringify(await client.audit()));
      const viewer = new MotusClient({ url: (JSON.parse(readFileSync(join(stateDir, 'client.json'), 'utf8')) as { url: string }).url, ca: readFileSync(join(stateDir, 'ca.pem'), 'utf8'), token: viewerToken });
      scan('tasks', JSON.stringify(await viewer.tasks()));
      scan('migrations', JSON.stringify(await viewer.migrations()));
      scan('hosts (with plugin facts)', JSON.stringify(await viewer.hosts()));
      scan('vms', JSON.stringify(await viewer.vms()));
      scan('datastores (plugin method)', JSON.stringify(await viewer.pluginCall('@motus/storage-iscsi', 'datastores', {})));
      scan('tokens', JSON.stringify(await client.tokens()));
      scan('users', JSON.stringify(await client.users()));
      scan('CA', JSON.stringify(await client.ca()));
      for (const path of ['/metrics', '/metrics/hosts/host-a', '/metrics/hosts/host-b', '/v1/audit?format=csv', '/v1/routes']) {
        const res = await fetchText(site!, path, viewerToken);
        scan(path, res);
      }
      viewer.close();
      console.log(`      scanned ${scanned.length} state files, ${siteEvents.length} site events, ${history.length} migration events for ${Object.keys(secrets).length} secrets`);
      expect(found).to.deep.equal([]);
    });
  });

  describe('site 2 (the control): encryption disabled', () => {
    before(async () => {
      control = await startSite(siteYaml('disabled', 2));
    });

    it('migrates host-a → host-b in plaintext: the same capture shows the marker', async () => {
      await startMarkerGuest(control!);
      const pcap = join(dir.path, 'disabled.pcap');
      const { events, port } = await capturedMigration(control!, 2, pcap);
      const prepared = events.find((e) => e.type === 'prepared') as Extract<MigrationEvent, { type: 'prepared' }>;
      expect(prepared.encrypted ?? false).to.equal(false);
      const seen = occurrences(pcap, MARKER);
      expect(seen, `marker ${MARKER} in the capture of a plaintext migration`).to.be.greaterThan(100);
      console.log(`      disabled: ${(statSync(pcap).size / 2 ** 20).toFixed(1)} MiB captured on port ${port}, marker found ${seen} times`);
    });
  });
});

/** A GET with the viewer's token, as text (metrics, CSV). */
async function fetchText(site: TestSite, path: string, token: string): Promise<string> {
  const { url, ca } = JSON.parse(readFileSync(join(site.stateDir, 'client.json'), 'utf8')) as { url: string; ca: string };
  const answer = await rawRequest({ method: 'GET', url: url + path, ca, token });
  expect(answer.status, `${path}: ${answer.text.slice(0, 200)}`).to.equal(200);
  return answer.text;
}
