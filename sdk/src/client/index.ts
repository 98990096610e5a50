export * from './motus-client.js';
export * from './ndjson.js';
