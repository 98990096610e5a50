import { readFile } from 'node:fs/promises';
import { MotusError, type HostCpuFacts, type Logger } from '@motus/sdk';
import { computeBaseline } from './baseline.js';
import type { CpuCompatConfig } from './config.js';
import { parseCpuInfo } from './cpuinfo.js';
import { CpuModels } from './cpu-spec.js';
import { hostCpuFacts } from './host-facts.js';
import { probeQemuCpus } from './qemu-probe.js';
import type { QemuCpuReport } from './qemu-report.js';

const RETRY_MS = 30_000;

interface Known {
  report: QemuCpuReport;
  facts: HostCpuFacts;
}

/**
 * The agent's side: reads /proc/cpuinfo and asks QEMU once (the answers change only
 * when QEMU or the kernel is upgraded, which restarts the agent), then serves the
 * cached result to every heartbeat. A failed probe is reported as an error fact
 * and retried, so a host whose QEMU came back recovers without a restart.
 */
export class AgentCpu {
  private known: Known | undefined;
  private error: MotusError | undefined;
  private attempt: Promise<void> | undefined;
  private retry: NodeJS.Timeout | undefined;
  private disposed = false;

  constructor(
    private readonly host: string,
    private readonly config: CpuCompatConfig,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.attempt = this.probe();
  }

  /** What the heartbeat carries. */
  facts(): HostCpuFacts | { error: string; code: string } | { state: 'probing' } {
    if (this.known) return this.known.facts;
    if (this.error) return { error: this.error.message, code: this.error.code };
    return { state: 'probing' };
  }

  /** The probe's result, waiting for a probe in flight; throws the probe's error. */
  async ready(timeoutMs = this.config.probeTimeoutMs + 5_000): Promise<Known> {
    if (!this.known && !this.attempt) this.start();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.attempt,
      new Promise((_r, reject) => {
        timer = setTimeout(() => reject(new MotusError('MOTUS_E_CPU_PROBE', `the CPU probe of ${this.host} did not finish within ${timeoutMs} ms`, { host: this.host })), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
    if (this.known) return this.known;
    throw this.error ?? new MotusError('MOTUS_E_CPU_PROBE', `the CPU probe of ${this.host} gave no result`, { host: this.host });
  }

  dispose(): void {
    this.disposed = true;
    if (this.retry) clearTimeout(this.retry);
  }

  private async probe(): Promise<void> {
    try {
      const text = await readFile(this.config.cpuinfoPath, 'utf8').catch((err: Error) => {
        throw new MotusError('MOTUS_E_CPU_CPUINFO', `cannot read ${this.config.cpuinfoPath}: ${err.message}`, { path: this.config.cpuinfoPath });
      });
      const cpuinfo = parseCpuInfo(text);
      if (!cpuinfo.ok) throw new MotusError('MOTUS_E_CPU_CPUINFO', `${this.config.cpuinfoPath} is not usable: ${cpuinfo.error}`, { path: this.config.cpuinfoPath });
      const report = await probeQemuCpus({ qemuBinary: this.config.qemuBinary, accelerator: this.config.accelerator, timeoutMs: this.config.probeTimeoutMs });
      const facts = hostCpuFacts(this.host, cpuinfo.value, report, this.config.hosts[this.host]);
      if (this.config.baseline !== 'auto') {
        // A named or custom baseline needs no other host: each host can tell on its own whether it fits.
        const baseline = computeBaseline(this.config.baseline, [facts], new CpuModels(report.catalog));
        const refusal = baseline.refused[0];
        facts.baseline = { cpu: baseline.cpu, ok: refusal === undefined, missing: refusal?.missing ?? [] };
        if (refusal?.vendorMismatch) facts.baseline.vendorMismatch = { baseline: refusal.vendorMismatch.cpu, host: refusal.vendorMismatch.host };
      }
      this.known = { report, facts };
      this.error = undefined;
      this.logger.info('CPU facts ready', { vendor: facts.vendor, accelerator: facts.qemu.accelerator, features: facts.features.length, runnableModels: facts.runnableModels.length });
    } catch (err) {
      this.error = MotusError.from(err, 'MOTUS_E_CPU_PROBE');
      this.logger.error('CPU probe failed', { error: this.error.message });
      if (!this.disposed) {
        this.retry = setTimeout(() => (this.attempt = this.probe()), RETRY_MS);
        this.retry.unref();
      }
    }
  }
}
