export * from './messages.js';
export * from './codec.js';
export * from './session.js';
export * from './qmp-client.js';
