export * from './system.js';
export * from './guest-kit.js';
