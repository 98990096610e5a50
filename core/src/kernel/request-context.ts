import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';

/**
 * The request id that follows one API call through the task it queues, the
 * migration it runs and every agent call made for it. It lives in an
 * AsyncLocalStorage, so log lines and outgoing agent calls find it without each
 * function passing it on; a queued task re-enters it when it is dispatched.
 */
export const REQUEST_ID_HEADER = 'x-request-id';

const storage = new AsyncLocalStorage<{ requestId: string }>();
/** What a caller may send as its own request id (anything else is replaced). */
const ACCEPTED = /^[A-Za-z0-9._:-]{1,64}$/;

export function newRequestId(): string {
  return `r-${randomBytes(6).toString('hex')}`;
}

/** The caller's id when it is well formed, a fresh one otherwise. */
export function requestIdFrom(header: string | string[] | undefined): string {
  const value = Array.isArray(header) ? header[0] : header;
  return value !== undefined && ACCEPTED.test(value) ? value : newRequestId();
}

export function currentRequestId(): string | undefined {
  return storage.getStore()?.requestId;
}

export function withRequestId<T>(requestId: string | undefined, fn: () => T): T {
  return requestId === undefined ? fn() : storage.run({ requestId }, fn);
}
