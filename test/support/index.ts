export * from './system.js';
export * from './guest-kit.js';
export * from './site.js';
export * from './random.js';
export * from './disk-writer-guest.js';
export * from './prometheus-text.js';
export * from './heartbeat-clock.js';
