import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { HttpTransport, MotusClient, type VmSpec } from '@motus/sdk';
import { guestKit, parseExposition, requireCommand, requireGuestKitSite, startSite, twoHostSiteYaml, valueOf, waitFor, type TestSite } from '../../support/index.js';
import { artefactsDir, launchChromium } from '../../support/browser.js';

const VM = 'web-1';

/** A guest that keeps 48 MiB dirty, sent at 8 MiB/s: a migration that lasts long enough to watch. */
function spec(): VmSpec {
  const kit = guestKit();
  return {
    name: VM,
    memoryMiB: 192,
    vcpus: 1,
    boot: { kind: 'kernel', kernel: kit.kernel, initrd: kit.initrd, cmdline: kit.cmdline({ dirtyMBps: 4, workingSetMiB: 48 }) },
  };
}

/** The site CA (from client.json): the server answers HTTPS. */
let siteCa = '';

async function scrape(url: string, token: string, path: string): Promise<ReturnType<typeof parseExposition>> {
  // The site answers HTTPS with its own CA (client.json carries it).
  const transport = new HttpTransport(url, { ca: siteCa });
  try {
    const response = await transport.request(path, { method: 'GET', headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(15_000) });
    expect(response.status, path).to.equal(200);
    expect(response.headers['content-type']).to.match(/^text\/plain; version=0\.0\.4/);
    return parseExposition(await response.text());
  } finally {
    transport.close();
  }
}

async function signIn(page: Page, url: string, token: string): Promise<void> {
  await page.goto(`${url}/`);
  await page.fill('input[name=token]', token);
  await page.click('form.sign-in button[type=submit]');
  await page.waitForSelector('[data-field=stream]:has-text("live")', { timeout: 30_000 });
}

describe('web console in headless Chromium, with metrics, against a real all-in-one site (QEMU)', function () {
  this.timeout(600_000);
  let site: TestSite;
  let url: string;
  let adminToken: string;
  let viewerToken: string;
  let browser: Awaited<ReturnType<typeof launchChromium>>;
  const shots = artefactsDir('console');

  before(async () => {
    requireGuestKitSite();
    requireCommand('chromium', 'chromium');
    site = await startSite(`${twoHostSiteYaml('console', 8)}plugins:
  - package: '@motus/hv-qemu'
`, { MOTUS_LOG_LEVEL: 'info' });
    ({ url, token: adminToken, ca: siteCa } = JSON.parse(readFileSync(join(site.stateDir, 'client.json'), 'utf8')) as { url: string; token: string; ca: string });
    await site.client.addUser('vera', 'viewer');
    viewerToken = (await site.client.createToken('vera', 'console test')).token;
    await site.client.startVm(spec(), 'host-a');
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    await site?.stop();
  });

  it('signs in, starts a real migration from the wizard, shows it live to completion, finds it in the audit view; metrics move', async () => {
    const page = await browser.context.newPage();
    const offSite: string[] = [];
    page.on('request', (request) => {
      if (!request.url().startsWith(url)) offSite.push(request.url());
    });
    await signIn(page, url, adminToken);
    expect(await page.textContent('[data-field=who]')).to.equal('admin · admin');

    await page.click('[data-nav=hosts]');
    await page.waitForSelector('tr[data-host=host-b]');
    expect(await page.locator('tr[data-host] .state-connected').count()).to.equal(2);
    await page.click('[data-nav=vms]');
    expect(await page.textContent(`tr[data-vm=${VM}] .vm-host`)).to.equal('host-a');

    // No polling: once the page is up, nothing is asked for while nothing happens.
    const asked: string[] = [];
    const onRequest = (request: { url(): string }) => asked.push(request.url());
    page.on('request', onRequest);
    await page.waitForTimeout(3_000);
    page.off('request', onRequest);
    expect(asked, 'requests made by an idle page').to.deep.equal([]);

    const before = await scrape(url, adminToken, '/metrics');
    await page.click('[data-nav=migrate]');
    await page.selectOption('select[name=vm]', VM);
    // Ranked by the server's placement engine: host-b first with a score and reasons, host-a refused (the VM is there).
    await page.waitForSelector('[data-destination=host-b][data-rank="1"]');
    expect(await page.textContent('[data-destination=host-b]')).to.match(/score \d+/);
    expect(await page.isDisabled('[data-destination=host-a] input')).to.equal(true);
    expect(await page.textContent('[data-destination=host-a]')).to.contain('same-host');
    await page.screenshot({ path: join(shots, 'wizard.png') });
    await page.check('[data-destination=host-b] input');
    await page.selectOption('select[name=priority]', 'normal');
    await page.click('button[name=start]');
    await page.waitForURL(/#migrations\/m-/, { timeout: 60_000 });
    const id = decodeURIComponent(page.url().split('#migrations/')[1]!);

    // Watch the bar: the values it shows while the migration runs, pushed by the server.
    const seen: number[] = [];
    const scrapes: Array<{ server: number; agent: number }> = [];
    let shot = false;
    await waitFor(
      'the migration to end in the console',
      async () => {
        const bar = page.locator(`[data-detail="${id}"] [role=progressbar]`);
        const value = Number(await bar.getAttribute('aria-valuenow'));
        if (seen.at(-1) !== value) seen.push(value);
        const state = await page.textContent(`[data-detail="${id}"] [data-field=state]`);
        if (state === 'running' && value > 0 && value < 100) {
          const server = await scrape(url, adminToken, '/metrics');
          const agent = await scrape(url, adminToken, '/metrics/hosts/host-a');
          scrapes.push({ server: valueOf(server, 'motus_migration_transferred_bytes_total') ?? 0, agent: valueOf(agent, 'motus_agent_migration_sent_bytes_total') ?? 0 });
          // Past the first round the chart shows both lines: the picture docs/console-migration.png comes from.
          if (!shot && Number(await page.textContent(`[data-detail="${id}"] [data-field=round]`)) >= 3) {
            shot = true;
            await page.screenshot({ path: join(shots, 'migration-running.png') });
          }
        }
        return state === 'completed' || state === 'failed' || state === 'rejected' ? state : undefined;
      },
      300_000,
      250,
    );
    expect(await page.textContent(`[data-detail="${id}"] [data-field=state]`)).to.equal('completed');
    expect(seen.filter((v) => v > 0 && v < 100).length, `progress values seen: ${seen.join(', ')}`).to.be.at.least(2);
    expect(await page.locator(`[data-detail="${id}"] [role=progressbar]`).getAttribute('aria-valuenow')).to.equal('100');
    // Each pre-copy round starts over on what was dirtied meanwhile, so the bar may step back; it must mostly climb.
    const climbs = seen.filter((v, i) => i > 0 && v > seen[i - 1]!).length;
    expect(climbs, `progress values seen: ${seen.join(', ')}`).to.be.at.least(3);
    expect(shot, 'a screenshot taken mid-migration').to.equal(true);
    await page.waitForSelector(`[data-detail="${id}"] [data-field=downtime]`);
    expect(await page.textContent(`[data-detail="${id}"] [data-field=downtime]`)).to.match(/\d+ (ms|s)/);
    expect(await page.locator(`[data-detail="${id}"] polyline.line-dirty`).count()).to.equal(1);
    await page.screenshot({ path: join(shots, 'migration-completed.png') });
    const task = await site.client.task(id);
    expect(task.state).to.equal('completed');

    // One request id in the JSON log lines of the server and of both agents' processes for this migration.
    const logLines = (path: string) =>
      readFileSync(join(site.stateDir, path), 'utf8')
        .split('\n')
        .filter((line) => line.trim() !== '')
        .map((line) => JSON.parse(line) as Record<string, unknown>);
    const mine = (path: string) => logLines(path).filter((l) => l.requestId === task.requestId);
    expect(task.requestId).to.match(/^r-[0-9a-f]{12}$/);
    expect(mine('server/server.log').map((l) => l.msg)).to.include.members(['request', 'migration task queued', 'migration completed']);
    expect(mine('server/server.log').find((l) => l.msg === 'request')).to.include({ method: 'POST', route: '/v1/migrations', status: 202, level: 'info' });
    expect(mine('agents/host-a/agent.log.json').map((l) => l.msg)).to.include('outgoing migration started');
    expect(mine('agents/host-b/agent.log.json').map((l) => l.msg)).to.include('incoming migration ready');
    for (const line of mine('agents/host-b/agent.log.json')) expect(line).to.include({ role: 'agent', host: 'host-b' }).and.to.include.keys('time', 'level');

    // Metrics scraped during the migration moved, and the histograms hold the migration.
    expect(scrapes.length, 'scrapes during the migration').to.be.at.least(2);
    expect(scrapes.at(-1)!.server).to.be.greaterThan(scrapes[0]!.server);
    expect(scrapes.at(-1)!.agent).to.be.greaterThan(scrapes[0]!.agent);
    const after = await scrape(url, adminToken, '/metrics');
    expect((valueOf(after, 'motus_migrations_total', { outcome: 'completed' }) ?? 0) - (valueOf(before, 'motus_migrations_total', { outcome: 'completed' }) ?? 0)).to.equal(1);
    expect(valueOf(after, 'motus_migration_downtime_seconds_count')).to.equal(1);
    expect(valueOf(after, 'motus_migration_duration_seconds_count')).to.equal(1);
    expect(valueOf(after, 'motus_migration_duration_seconds_sum')).to.be.greaterThan(1);
    expect(valueOf(after, 'motus_task_queue_length')).to.equal(0);
    expect(after.get('process_resident_memory_bytes')?.type).to.equal('gauge');
    const destination = await scrape(url, adminToken, '/metrics/hosts/host-b');
    expect(valueOf(destination, 'motus_agent_vms', { role: 'running' })).to.equal(1);

    // The audit view finds it, with the chain verified.
    await page.click('[data-nav=audit]');
    await page.fill('form.filters input[name=vm]', VM);
    await page.click('form.filters button[type=submit]');
    await page.waitForSelector(`tr[data-task="${id}"]:has-text("migration.completed")`);
    expect(await page.textContent('[data-field=verification]')).to.contain('chain verified');
    // The unfiltered table shown on arrival may still be on screen when the completed row
    // first matches; the filtered one replaces it when the server's answer arrives.
    const rowTexts = await waitFor(
      'the audit table to show only the filtered VM',
      async () => {
        const texts = await page.locator('tr[data-audit]').allTextContents();
        return texts.length > 2 && texts.every((text) => text.includes(VM)) ? texts : undefined;
      },
      30_000,
      200,
    );
    for (const text of rowTexts) expect(text).to.contain(VM);
    await page.screenshot({ path: join(shots, 'audit.png') });
    expect(offSite, 'requests to anything but the site').to.deep.equal([]);
    await page.close();
  });

  it('a viewer sees hosts, VMs, migrations and the audit trail, and cannot start a migration', async () => {
    const page = await browser.context.newPage();
    await signIn(page, url, viewerToken);
    expect(await page.textContent('[data-field=who]')).to.equal('vera · viewer');
    await page.click('[data-nav=hosts]');
    await page.waitForSelector('tr[data-host=host-a]');
    expect(await page.locator('tr[data-host]').count()).to.equal(2);
    await page.click('[data-nav=vms]');
    expect(await page.textContent(`tr[data-vm=${VM}] .vm-host`)).to.equal('host-b');
    await page.click('[data-nav=migrations]');
    await page.waitForSelector('tr[data-migration] .state-completed');
    await page.click('[data-nav=audit]');
    await page.waitForSelector('tr[data-audit]:has-text("migration.completed")');

    await page.click('[data-nav=migrate]');
    await page.waitForSelector('[data-field=viewer-notice]');
    await page.selectOption('select[name=vm]', VM);
    await page.waitForSelector('[data-destination=host-a][data-rank="1"]');
    await page.check('[data-destination=host-a] input');
    expect(await page.isDisabled('button[name=start]'), 'the start button for a viewer').to.equal(true);
    await page.screenshot({ path: join(shots, 'viewer-wizard.png') });
    // The server refuses it too, whatever the page shows: a viewer's token cannot start one.
    const refused = await page.evaluate(async (token) => {
      const response = await fetch('/v1/migrations', { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ vm: 'web-1', destination: 'host-a' }) });
      return { status: response.status, body: (await response.json()) as { error: { code: string } } };
    }, viewerToken);
    expect(refused.status).to.equal(403);
    expect(refused.body.error.code).to.equal('MOTUS_E_FORBIDDEN');
    expect((await site.client.vms()).find((v) => v.name === VM)?.host).to.equal('host-b');
    const viewer = new MotusClient({ url, token: viewerToken, ca: siteCa });
    expect((await viewer.migrations()).filter((m) => m.vm === VM)).to.have.length(1);
    await page.close();
  });
});
