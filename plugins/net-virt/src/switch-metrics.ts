import type { PluginMetrics } from '@motus/sdk';
import type { VirtualSwitch } from './virtual-switch.js';

/**
 * The switch's per-port counters on the agent's /metrics. They are totals the
 * switch keeps anyway, read at each scrape: forwarding pays nothing for them, and
 * a detached port's series disappears with it.
 */
export function publishSwitchMetrics(metrics: PluginMetrics, sw: VirtualSwitch): void {
  const labelNames = ['port', 'network', 'direction'];
  const perPort = (pick: (c: ReturnType<VirtualSwitch['portInfo']>[number]['counters']) => { rx: number; tx: number }) => () =>
    sw.portInfo().flatMap((p) => {
      const { rx, tx } = pick(p.counters);
      return [
        { labels: { port: p.id, network: p.network, direction: 'rx' }, value: rx },
        { labels: { port: p.id, network: p.network, direction: 'tx' }, value: tx },
      ];
    });
  metrics.sampled(
    { type: 'counter', name: 'motus_vswitch_frames_total', help: 'Frames through each virtual switch port (rx: from the VM, tx: to the VM).', labelNames },
    perPort((c) => ({ rx: c.rxFrames, tx: c.txFrames })),
  );
  metrics.sampled(
    { type: 'counter', name: 'motus_vswitch_bytes_total', help: 'Bytes through each virtual switch port.', labelNames },
    perPort((c) => ({ rx: c.rxBytes, tx: c.txBytes })),
  );
  metrics.sampled(
    {
      type: 'counter',
      name: 'motus_vswitch_dropped_frames_total',
      help: 'Frames dropped at each port: rx, malformed or unforwardable frames from the VM; tx, frames over the port queue limit or queued for a port that went away.',
      labelNames,
    },
    perPort((c) => ({ rx: c.rxDropped, tx: c.dropped })),
  );
  metrics.sampled(
    { type: 'gauge', name: 'motus_vswitch_queued_frames', help: 'Frames waiting in each port queue for the VM to read them.', labelNames: ['port', 'network'] },
    () => sw.portInfo().map((p) => ({ labels: { port: p.id, network: p.network }, value: p.counters.queuedFrames })),
  );
  const uplink = (pick: (u: ReturnType<VirtualSwitch['uplinkStats']>) => number) => () => {
    const u = sw.uplinkStats();
    return [{ labels: {}, value: pick(u) }];
  };
  metrics.sampled({ type: 'counter', name: 'motus_vswitch_uplink_frames_sent_total', help: 'Frames this switch sent to its VXLAN peers.' }, uplink((u) => u.txFrames));
  metrics.sampled({ type: 'counter', name: 'motus_vswitch_uplink_frames_received_total', help: 'Frames this switch received from its VXLAN peers.' }, uplink((u) => u.rxFrames));
  metrics.sampled({ type: 'counter', name: 'motus_vswitch_uplink_dropped_frames_total', help: 'Frames from VXLAN peers dropped (unknown segment or malformed).' }, uplink((u) => u.rxDropped + u.rxUnknownSegment));
}
