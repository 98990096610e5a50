export { ScsiError, isScsiError, type ScsiErrorCode, type ScsiResult } from './errors.js';
export * from './sense.js';
export * from './cdb.js';
export * from './inquiry.js';
export * from './capacity.js';
export * from './lun.js';
export * from './reservations.js';
export * from './reservation-device.js';
export * from './host-key.js';
