/**
 * /proc/cpuinfo as the kernel prints it on x86: blocks of `key<TAB>: value` lines,
 * one block per logical CPU. Only the first processor's block is read: Motus
 * assumes a host's CPUs are alike (mixed-SKU sockets are not a supported host).
 */

export interface CpuInfo {
  vendor: string;
  family: number;
  model: number;
  stepping: number;
  modelName: string;
  /** Kernel spellings, as printed (e.g. sse4_1, tsc_deadline_timer). */
  flags: string[];
  logicalCpus: number;
}

export type CpuInfoResult = { ok: true; value: CpuInfo } | { ok: false; error: string };

/** Total: any text gives a value or an error that says what is missing. */
export function parseCpuInfo(text: string): CpuInfoResult {
  const blocks = text.split(/\n\s*\n/).filter((b) => /^processor\s*:/m.test(b));
  if (blocks.length === 0) return { ok: false, error: 'no "processor" entry: this is not x86 /proc/cpuinfo' };
  const fields = new Map<string, string>();
  for (const line of blocks[0]!.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const key = line.slice(0, colon).trim();
    if (key !== '' && !fields.has(key)) fields.set(key, line.slice(colon + 1).trim());
  }
  const missing = ['vendor_id', 'cpu family', 'model', 'flags'].filter((k) => !fields.has(k));
  if (missing.length > 0) return { ok: false, error: `the first processor entry lacks ${missing.join(', ')}` };
  const numeric = (key: string): number | undefined => {
    const raw = fields.get(key);
    if (raw === undefined || raw === '') return key === 'stepping' ? 0 : undefined;
    return /^\d+$/.test(raw) ? Number(raw) : undefined;
  };
  const family = numeric('cpu family');
  const model = numeric('model');
  const stepping = numeric('stepping');
  if (family === undefined || model === undefined || stepping === undefined) {
    return { ok: false, error: `cpu family, model and stepping must be decimal numbers (got "${fields.get('cpu family')}", "${fields.get('model')}", "${fields.get('stepping')}")` };
  }
  const flags = fields.get('flags')!.split(/\s+/).filter((f) => /^[a-z0-9_.]+$/.test(f));
  if (flags.length === 0) return { ok: false, error: 'the flags line is empty' };
  return {
    ok: true,
    value: {
      vendor: fields.get('vendor_id')!,
      family,
      model,
      stepping,
      modelName: fields.get('model name') ?? '',
      flags: [...new Set(flags)].sort(),
      logicalCpus: blocks.length,
    },
  };
}
