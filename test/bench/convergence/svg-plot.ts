/**
 * A small SVG line plot: remaining bytes over time, one line per policy, one panel
 * per workload. Written by hand (no plotting dependency): axes, ticks, a legend.
 */
export interface Series {
  label: string;
  color: string;
  points: Array<{ t: number; mib: number }>;
  /** Marks the end: completed (circle) or abandoned (cross). */
  completed: boolean;
}

export interface Panel {
  title: string;
  series: Series[];
}

const W = 760;
const H = 260;
const M = { left: 56, right: 16, top: 28, bottom: 40 };

function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function niceStep(range: number, ticks: number): number {
  const raw = range / ticks;
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? power * 10;
}

function panel(p: Panel, x0: number, y0: number): string {
  const all = p.series.flatMap((s) => s.points);
  const tMax = Math.max(1, ...all.map((q) => q.t));
  const yMax = Math.max(1, ...all.map((q) => q.mib));
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const sx = (t: number) => x0 + M.left + (t / tMax) * pw;
  const sy = (v: number) => y0 + M.top + ph - (v / yMax) * ph;
  const out: string[] = [];
  out.push(`<text x="${x0 + W / 2}" y="${y0 + 18}" text-anchor="middle" font-weight="bold">${esc(p.title)}</text>`);
  out.push(`<rect x="${x0 + M.left}" y="${y0 + M.top}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`);
  const tStep = niceStep(tMax, 6);
  for (let t = 0; t <= tMax + 1e-9; t += tStep) {
    out.push(`<line x1="${sx(t)}" y1="${y0 + M.top + ph}" x2="${sx(t)}" y2="${y0 + M.top + ph + 4}" stroke="#666"/>`);
    out.push(`<text x="${sx(t)}" y="${y0 + M.top + ph + 16}" text-anchor="middle" font-size="10">${Number(t.toFixed(1))}</text>`);
  }
  out.push(`<text x="${x0 + M.left + pw / 2}" y="${y0 + H - 6}" text-anchor="middle" font-size="11">seconds since migrate</text>`);
  const yStep = niceStep(yMax, 5);
  for (let v = 0; v <= yMax + 1e-9; v += yStep) {
    out.push(`<line x1="${x0 + M.left - 4}" y1="${sy(v)}" x2="${x0 + M.left + pw}" y2="${sy(v)}" stroke="#eee"/>`);
    out.push(`<text x="${x0 + M.left - 6}" y="${sy(v) + 3}" text-anchor="end" font-size="10">${Number(v.toFixed(0))}</text>`);
  }
  out.push(`<text transform="translate(${x0 + 14},${y0 + M.top + ph / 2}) rotate(-90)" text-anchor="middle" font-size="11">remaining MiB</text>`);
  for (const s of p.series) {
    if (s.points.length === 0) continue;
    const d = s.points.map((q, i) => `${i === 0 ? 'M' : 'L'}${sx(q.t).toFixed(1)},${sy(q.mib).toFixed(1)}`).join(' ');
    out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.5"/>`);
    const end = s.points.at(-1)!;
    out.push(
      s.completed
        ? `<circle cx="${sx(end.t).toFixed(1)}" cy="${sy(end.mib).toFixed(1)}" r="3" fill="${s.color}"/>`
        : `<path d="M${sx(end.t) - 4},${sy(end.mib) - 4} l8,8 m0,-8 l-8,8" stroke="${s.color}" stroke-width="2"/>`,
    );
  }
  return out.join('\n');
}

/** Panels in a column, the legend (labels and colours of the first panel) on top. */
export function remainingPlot(panels: Panel[], caption: string): string {
  const legend = panels[0]?.series ?? [];
  const legendH = 36 + 16 * legend.length;
  const height = legendH + panels.length * H + 10;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="100%" height="100%" fill="white"/>`);
  parts.push(`<text x="8" y="14" font-size="11">${esc(caption)}</text>`);
  legend.forEach((s, i) => {
    parts.push(`<line x1="12" y1="${28 + 16 * i}" x2="36" y2="${28 + 16 * i}" stroke="${s.color}" stroke-width="2"/>`);
    parts.push(`<text x="42" y="${32 + 16 * i}">${esc(s.label)}</text>`);
  });
  parts.push(`<text x="12" y="${32 + 16 * legend.length}" font-size="10">● completed   ✕ abandoned at the completion cap</text>`);
  panels.forEach((p, i) => parts.push(panel(p, 0, legendH + i * H)));
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
