import { expect } from 'chai';
import {
  BOOT_MARKER,
  QemuPluginConfigSchema,
  bootSector,
  parseQemuVersion,
  tcpUri,
  toHypervisorEvent,
  toMigrationProgress,
  toMigrationStatus,
  toRunState,
  tuningToQmp,
  liveTuningToQmp,
  migrationFeatures,
  xbzrleCacheSize,
} from '@motus/hv-qemu';
import plugin from '@motus/hv-qemu';
import { API_VERSION, HypervisorDriverToken, isPluginDefinition } from '@motus/sdk';

describe('hv-qemu domain mappings', () => {
  it('maps an active query-migrate to MigrationProgress', () => {
    const progress = toMigrationProgress({
      status: 'active',
      'total-time': 1500,
      'expected-downtime': 320,
      'setup-time': 4,
      ram: { total: 268_435_456, transferred: 100_000_000, remaining: 150_000_000, 'dirty-pages-rate': 2500, 'page-size': 4096, mbps: 800, 'dirty-sync-count': 3 },
    });
    expect(progress).to.deep.equal({
      status: 'active',
      totalTimeMs: 1500,
      round: 3,
      totalBytes: 268_435_456,
      transferredBytes: 100_000_000,
      remainingBytes: 150_000_000,
      dirtyRateBytesPerSec: 2500 * 4096,
      throughputBytesPerSec: 100_000_000,
      expectedDowntimeMs: 320,
    });
  });

  it('adds downtime and setup time once completed, and the error text when failed', () => {
    const done = toMigrationProgress({ status: 'completed', 'total-time': 900, downtime: 12, 'setup-time': 3, ram: { total: 1, transferred: 1, remaining: 0 } });
    expect(done).to.deep.include({ status: 'completed', downtimeMs: 12, setupTimeMs: 3, dirtyRateBytesPerSec: 0 });
    const failed = toMigrationProgress({ status: 'failed', 'error-desc': 'Unable to write to socket: Broken pipe' });
    expect(failed).to.deep.include({ status: 'failed', error: 'Unable to write to socket: Broken pipe', totalBytes: 0 });
    expect(toMigrationProgress({})).to.deep.include({ status: 'none', round: 0 });
  });

  it('folds QEMU migration states the SDK does not name into the nearest one', () => {
    expect(toMigrationStatus('pre-switchover')).to.equal('pre-switchover');
    expect(toMigrationStatus('postcopy-paused')).to.equal('postcopy-active');
    expect(toMigrationStatus('wait-unplug')).to.equal('setup');
    expect(toMigrationStatus('colo')).to.equal('active');
    expect(toMigrationStatus(undefined)).to.equal('none');
  });

  it('maps run states, unknown ones to other', () => {
    expect(toRunState('postmigrate')).to.equal('postmigrate');
    expect(toRunState('inmigrate')).to.equal('inmigrate');
    expect(toRunState('restore-vm')).to.equal('other');
  });

  it('maps QMP events to HypervisorEvents with QEMU timestamps', () => {
    const ts = 1_700_000_000_123_456;
    expect(toHypervisorEvent({ kind: 'event', event: 'STOP', data: {}, timestampUs: ts })).to.deep.equal({ type: 'stopped', at: '2023-11-14T22:13:20.123Z' });
    expect(toHypervisorEvent({ kind: 'event', event: 'RESUME', data: {}, timestampUs: ts })?.type).to.equal('resumed');
    expect(toHypervisorEvent({ kind: 'event', event: 'SHUTDOWN', data: { guest: true, reason: 'guest-shutdown' }, timestampUs: ts })).to.deep.include({ type: 'shutdown', guest: true });
    expect(toHypervisorEvent({ kind: 'event', event: 'MIGRATION', data: { status: 'completed' }, timestampUs: ts })).to.deep.include({ type: 'migration-status', status: 'completed' });
    expect(toHypervisorEvent({ kind: 'event', event: 'MIGRATION', data: {}, timestampUs: ts })).to.equal(undefined);
    expect(toHypervisorEvent({ kind: 'event', event: 'MIGRATION_PASS', data: { pass: 2 }, timestampUs: ts })).to.equal(undefined);
  });

  it('turns tuning into QMP capabilities and parameters, typed fields winning', () => {
    expect(tuningToQmp({ maxBandwidthBytesPerSec: 1e9, downtimeLimitMs: 300, capabilities: { 'auto-converge': true }, parameters: { 'max-bandwidth': 5, 'multifd-channels': 4 } })).to.deep.equal({
      capabilities: { 'auto-converge': true },
      parameters: { 'max-bandwidth': 1_000_000_000, 'downtime-limit': 300, 'multifd-channels': 4 },
    });
    // Without a bandwidth the driver sets none: the caller (the core) owns that choice.
    expect(tuningToQmp({})).to.deep.equal({ capabilities: {}, parameters: {} });
    expect(tuningToQmp()).to.deep.equal({ capabilities: {}, parameters: {} });
  });

  it('maps the typed convergence knobs to QEMU capabilities and parameters', () => {
    expect(
      tuningToQmp({
        switchoverBandwidthBytesPerSec: 3e8,
        throttle: { initialPct: 0, incrementPct: 120, maxPct: 40, triggerThresholdPct: 150 },
        xbzrle: { cacheBytes: 100 * 1024 * 1024 },
        multifd: { channels: 4 },
        postcopy: true,
        dirtyLimitMBps: 12.4,
      }),
    ).to.deep.equal({
      capabilities: { 'auto-converge': true, xbzrle: true, multifd: true, 'postcopy-ram': true },
      parameters: {
        'avail-switchover-bandwidth': 300_000_000,
        // QEMU takes 1..99 for the throttle levels and 1..100 for the threshold: clamped rather than refused.
        'cpu-throttle-initial': 1,
        'cpu-throttle-increment': 99,
        'max-cpu-throttle': 40,
        'throttle-trigger-threshold': 100,
        // A power of two of at least a page, as QEMU demands.
        'xbzrle-cache-size': 64 * 1024 * 1024,
        'multifd-channels': 4,
      },
      dirtyLimitMBps: 12,
    });
    expect(xbzrleCacheSize(5000)).to.equal(4096);
    expect(xbzrleCacheSize(100)).to.equal(4096);
    expect(xbzrleCacheSize(128 * 1024 * 1024)).to.equal(128 * 1024 * 1024);
    // A running migration takes parameters only: QEMU refuses migrate-set-capabilities then.
    expect(liveTuningToQmp({ throttle: { initialPct: 20, incrementPct: 20, maxPct: 20 }, xbzrle: { cacheBytes: 4096 } })).to.deep.equal({
      capabilities: {},
      parameters: { 'cpu-throttle-initial': 20, 'cpu-throttle-increment': 20, 'max-cpu-throttle': 20, 'xbzrle-cache-size': 4096 },
    });
  });

  it('reads the throttle level and xbzrle statistics of query-migrate', () => {
    const progress = toMigrationProgress({
      status: 'active',
      'cpu-throttle-percentage': 40,
      'xbzrle-cache': { 'cache-size': 33554432, bytes: 1000, pages: 8192, 'cache-miss': 100, 'cache-miss-rate': 0.85, 'encoding-rate': 85.7, overflow: 1 },
      ram: { total: 1, transferred: 1, remaining: 0 },
    });
    expect(progress.cpuThrottlePct).to.equal(40);
    expect(progress.xbzrle).to.deep.equal({ cacheBytes: 33554432, pages: 8192, encodingRate: 85.7, cacheMissRate: 0.85, overflow: 1 });
  });

  it('offers dirty-limit under no accelerator Motus launches, saying why', () => {
    expect(migrationFeatures('tcg').available).to.not.include('dirty-limit');
    expect(migrationFeatures('tcg').unavailable['dirty-limit']).to.match(/tcg accelerator has no dirty ring/);
    expect(migrationFeatures('kvm').unavailable['dirty-limit']).to.match(/without a KVM dirty ring/);
  });

  it('builds tcp URIs, bracketing IPv6', () => {
    expect(tcpUri('127.0.0.1', 4444)).to.equal('tcp:127.0.0.1:4444');
    expect(tcpUri('::1', '4444')).to.equal('tcp:[::1]:4444');
  });

  it('reads the version from --version output', () => {
    expect(parseQemuVersion('QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022')).to.equal('7.2.22');
    expect(parseQemuVersion('QEMU emulator version 8.0\n')).to.equal('8.0');
    expect(parseQemuVersion('bash: not found')).to.equal(undefined);
  });

  it('generates a 512-byte boot sector with the signature and the marker', () => {
    const sector = bootSector();
    expect(sector.length).to.equal(512);
    expect(sector[510]).to.equal(0x55);
    expect(sector[511]).to.equal(0xaa);
    const at = sector.indexOf(BOOT_MARKER);
    expect(at).to.be.greaterThan(0);
    // mov si, imm16 points at the marker where the BIOS loads the sector (0x7c00).
    expect(sector.readUInt16LE(10)).to.equal(0x7c00 + at);
  });
});

describe('hv-qemu plugin manifest and config', () => {
  it('is a definePlugin value providing the hypervisor driver on agents', () => {
    expect(isPluginDefinition(plugin)).to.equal(true);
    expect(plugin.name).to.equal('@motus/hv-qemu');
    expect(plugin.apiVersion).to.equal(API_VERSION);
    expect(plugin.provides).to.deep.equal([HypervisorDriverToken]);
    expect(plugin.roles).to.deep.equal(['agent']);
  });

  it('fills defaults and rejects unknown or bad keys', () => {
    expect(QemuPluginConfigSchema.parse({})).to.deep.equal({ accelerator: 'auto', qemuBinary: 'qemu-system-x86_64', qmpTimeoutMs: 10_000, startTimeoutMs: 15_000, probeTimeoutMs: 5_000 });
    expect(QemuPluginConfigSchema.safeParse({ accelerator: 'hvf' }).success).to.equal(false);
    expect(QemuPluginConfigSchema.safeParse({ qmpTimeoutMs: -1 }).success).to.equal(false);
    expect(QemuPluginConfigSchema.safeParse({ accel: 'tcg' }).success).to.equal(false);
  });
});
