/**
 * The Motus switch in a process of its own, as an agent runs it, for the
 * benchmark: prints the two ports' socket paths as one JSON line and runs until
 * its stdin closes.
 */
import { HostSwitch, netVirtConfigSchema } from '@motus/net-virt';

const stateDir = process.argv[2];
if (!stateDir) throw new Error('usage: motus-switch.js <state folder>');
const config = netVirtConfigSchema.parse({ networks: { bench: { vni: 1 } }, portQueueFrames: 1024 });
const sw = await HostSwitch.start('bench', config, stateDir);
const paths = [];
for (const vm of ['tx', 'rx']) {
  const { netdev } = await sw.attach(vm, { id: 'n0', mac: vm === 'tx' ? '02:00:00:00:0b:01' : '02:00:00:00:0b:02', network: 'bench' });
  paths.push(/addr\.path=([^,]+)/.exec(netdev)![1]!);
}
process.stdout.write(`${JSON.stringify({ tx: paths[0], rx: paths[1] })}\n`);
process.stdin.resume();
process.stdin.on('end', () => {
  void sw.stop().then(() => process.exit(0));
});
