#!/usr/bin/env node
import { runCli } from '../cli/motus-cli.js';

runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env }).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`motus: ${String(err)}`);
    process.exit(1);
  },
);
