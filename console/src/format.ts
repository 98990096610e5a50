/** How the console writes sizes, rates and times. */
export function mib(bytes: number | undefined): string {
  if (bytes === undefined) return '—';
  const m = bytes / (1 << 20);
  return `${m.toFixed(m >= 100 ? 0 : 1)} MiB`;
}

export function rate(bytesPerSec: number | undefined): string {
  return bytesPerSec === undefined ? '—' : `${mib(bytesPerSec)}/s`;
}

export function ms(value: number | undefined): string {
  if (value === undefined) return '—';
  return value >= 10_000 ? `${(value / 1000).toFixed(1)} s` : `${Math.round(value)} ms`;
}

export function time(iso: string | undefined): string {
  if (!iso) return '—';
  return iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}
