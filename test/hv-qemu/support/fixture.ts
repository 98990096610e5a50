import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { QmpTrafficFixture } from './record-qmp-traffic.js';

/** The recorded QMP traffic (see record-qmp-traffic.ts), read from the source tree. */
export function qmpTraffic(): QmpTrafficFixture {
  return JSON.parse(readFileSync(fileURLToPath(new URL('../../../hv-qemu/fixtures/qmp-traffic.json', import.meta.url)), 'utf8')) as QmpTrafficFixture;
}

export function chunks(side: 'source' | 'destination'): Buffer[] {
  return qmpTraffic()[side].received.map((c) => Buffer.from(c, 'base64'));
}
