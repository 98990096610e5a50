#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { MotusError } from '@motus/sdk';
import { startAllInOne } from '../daemon/all-in-one.js';
import { reportPrivileges, requirePrivileges } from '../daemon/privileges.js';
import { fileLogger, runAgent, runServer, type Running } from '../daemon/roles.js';
import { loadSiteFile } from '../site/site-file.js';

const USAGE = `motusd — the Motus daemon

  motusd --all-in-one [--hosts N] --state DIR [--site FILE]
      a server and N agents (default 2) on this machine, loopback only
  motusd server --state DIR --site FILE
      the management server
  motusd agent --name HOST --state DIR --site FILE --server URL --ca FILE (--agent-token-file F | --agent-token T)
      the agent of one host; --ca is the site CA (ca.pem in the server's state folder)

The state folder may also come from MOTUS_STATE, the CA file from MOTUS_CA. Logs are
JSON lines in the state folder. Everything motusd writes is readable by its user only.`;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      'all-in-one': { type: 'boolean' },
      hosts: { type: 'string' },
      state: { type: 'string' },
      site: { type: 'string' },
      name: { type: 'string' },
      server: { type: 'string' },
      'agent-token': { type: 'string' },
      'agent-token-file': { type: 'string' },
      ca: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  // State (tokens, keys, logs, the database, QEMU's sockets) is the owner's only,
  // including what child processes create.
  process.umask(0o077);
  const stateDir = values.state ?? process.env.MOTUS_STATE;
  if (!stateDir) throw usage('--state DIR (or MOTUS_STATE) is required');
  // Before anything is written: what this user lacks is said whole, not as the first EACCES.
  requirePrivileges({ stateDir });
  let running: Running;
  if (values['all-in-one']) {
    const hosts = values.hosts === undefined ? 2 : Number(values.hosts);
    const site = await startAllInOne({
      stateDir: resolve(stateDir),
      hosts,
      ...(values.site ? { sitePath: resolve(values.site) } : {}),
      motusdScript: fileURLToPath(import.meta.url),
      out: (line) => console.log(line),
    });
    console.log(`Motus site ready: ${site.site.hosts.length} hosts, server ${site.url}, state ${resolve(stateDir)}`);
    console.log(`Try: MOTUS_STATE=${resolve(stateDir)} motus hosts`);
    running = site;
  } else if (positionals[0] === 'server') {
    if (!values.site) throw usage('motusd server needs --site FILE');
    const site = loadSiteFile(values.site);
    requirePrivileges({ stateDir, listen: [site.server.listen] });
    const logger = fileLogger(resolve(stateDir), 'server.log', { role: 'server' });
    reportPrivileges(logger);
    running = await runServer(site, resolve(stateDir), logger);
    console.log(`Motus server listening on ${running.url}`);
  } else if (positionals[0] === 'agent') {
    if (!values.site || !values.name || !values.server) throw usage('motusd agent needs --site, --name and --server');
    const site = loadSiteFile(values.site);
    const host = site.hosts.find((h) => h.name === values.name);
    if (!host) throw new MotusError('MOTUS_E_HOST_NOT_FOUND', `host ${values.name} is not in ${values.site}`, { host: values.name });
    const token = values['agent-token'] ?? (values['agent-token-file'] ? readFileSync(values['agent-token-file'], 'utf8').trim() : undefined);
    if (!token) throw usage('motusd agent needs --agent-token or --agent-token-file');
    requirePrivileges({ stateDir, listen: [host.listen] });
    const logger = fileLogger(resolve(stateDir), 'agent.log.json', { role: 'agent', host: host.name });
    reportPrivileges(logger);
    const caFile = values.ca ?? process.env.MOTUS_CA;
    let ca: string | undefined;
    if (caFile) {
      try {
        ca = readFileSync(caFile, 'utf8');
      } catch (err) {
        throw usage(`--ca ${caFile} cannot be read: ${(err as Error).message}`);
      }
    }
    running = await runAgent(site, host, resolve(stateDir), values.server, token, logger, ca);
    console.log(`Motus agent ${host.name} listening on ${running.url}`);
  } else {
    throw usage('say --all-in-one, server or agent');
  }
  await new Promise<void>((resolveStop) => {
    let stopping = false;
    const onSignal = (signal: string) => {
      if (stopping) return;
      stopping = true;
      console.log(`${signal}: stopping`);
      void running.stop().finally(() => resolveStop());
    };
    process.on('SIGINT', () => onSignal('SIGINT'));
    process.on('SIGTERM', () => onSignal('SIGTERM'));
  });
  return 0;
}

function usage(message: string): MotusError {
  return new MotusError('MOTUS_E_INVALID_REQUEST', `${message}\n\n${USAGE}`);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const error = MotusError.from(err);
    console.error(`motusd: ${error.code}: ${error.message}`);
    process.exit(error.code === 'MOTUS_E_INVALID_REQUEST' || error.code === 'MOTUS_E_SITE_INVALID' ? 2 : 1);
  },
);
