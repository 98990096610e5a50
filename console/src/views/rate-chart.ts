import { svg } from 'lit-html';
import type { Sample } from '../site-state.js';
import { rate } from '../format.js';

const W = 560;
const H = 160;
const PAD = { left: 8, right: 8, top: 10, bottom: 18 };

/**
 * Dirty rate and throughput over the migration's time, as two SVG lines on one
 * scale: where the red line stays above the blue one, pre-copy cannot converge.
 */
export function rateChart(samples: readonly Sample[]) {
  if (samples.length < 2) return svg`<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="waiting for samples"><text x="${W / 2}" y="${H / 2}" text-anchor="middle" class="muted">waiting for progress samples…</text></svg>`;
  const t0 = samples[0]!.at;
  const span = Math.max(1, samples[samples.length - 1]!.at - t0);
  const top = Math.max(1, ...samples.map((s) => Math.max(s.dirtyRateBytesPerSec, s.throughputBytesPerSec)));
  const x = (s: Sample) => PAD.left + ((s.at - t0) / span) * (W - PAD.left - PAD.right);
  const y = (v: number) => H - PAD.bottom - (v / top) * (H - PAD.top - PAD.bottom);
  const line = (pick: (s: Sample) => number) => samples.map((s) => `${x(s).toFixed(1)},${y(pick(s)).toFixed(1)}`).join(' ');
  return svg`<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="dirty rate and throughput over time">
    <line x1="${PAD.left}" y1="${H - PAD.bottom}" x2="${W - PAD.right}" y2="${H - PAD.bottom}" class="axis"></line>
    <text x="${PAD.left}" y="${PAD.top}" class="muted">${rate(top)}</text>
    <text x="${W - PAD.right}" y="${H - 4}" text-anchor="end" class="muted">${(span / 1000).toFixed(1)} s</text>
    <polyline points="${line((s) => s.throughputBytesPerSec)}" class="line-throughput"></polyline>
    <polyline points="${line((s) => s.dirtyRateBytesPerSec)}" class="line-dirty"></polyline>
  </svg>`;
}
