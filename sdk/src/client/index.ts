export * from './motus-client.js';
export * from './ndjson.js';
export * from './task-model.js';
export * from './json-http-client.js';
export * from './placement-model.js';
export * from './http-transport.js';
export * from './ca-model.js';
