/**
 * Records what this machine's QEMU answers about CPU models (the raw QMP replies)
 * and this machine's /proc/cpuinfo into fixtures/, for the unit tests. Run after a
 * build:  node test/dist/cpu-compat/support/record-qemu-cpus.js
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { probeQemuReplies } from '@motus/cpu-compat';

const fixtures = fileURLToPath(new URL('../../../cpu-compat/fixtures/', import.meta.url));
const replies = await probeQemuReplies({ accelerator: 'tcg' });
const name = `qemu-${replies.qemuVersion}-${replies.accelerator}.json`;
// Per-model expansions keep only the properties that are not false: the rest is
// every other feature QEMU knows, already listed in full by the host expansion.
const expansions = Object.fromEntries(
  Object.entries(replies.expansions).map(([model, e]) => [
    model,
    { model: { name: e.model.name, props: Object.fromEntries(Object.entries(e.model.props ?? {}).filter(([, v]) => v !== false)) } },
  ]),
);
writeFileSync(fixtures + name, JSON.stringify({ recordedAt: new Date().toISOString(), ...replies, expansions }) + '\n');
writeFileSync(fixtures + 'cpuinfo-recorded.txt', readFileSync('/proc/cpuinfo', 'utf8'));
console.log(`wrote ${name} (${replies.definitions.length} definitions) and cpuinfo-recorded.txt`);
