/** How many failed authentications an address may make in a window before it is refused. */
export interface AuthFailureLimits {
  maxFailures: number;
  windowSeconds: number;
}

export const DEFAULT_AUTH_FAILURE_LIMITS: AuthFailureLimits = { maxFailures: 20, windowSeconds: 60 };

/** Addresses tracked at most; the oldest is forgotten first, so a flood of sources cannot grow memory without bound. */
const MAX_TRACKED = 10_000;

/**
 * Counts failed authentications (401) per client address in a sliding window.
 * Once an address reaches the limit, every request from it that needs a token is
 * refused (429) until its oldest failure leaves the window — valid tokens too,
 * or a guesser would learn which guess was right from the one that is not refused.
 */
export class AuthFailureLimiter {
  private readonly failures = new Map<string, number[]>();

  constructor(
    private readonly limits: AuthFailureLimits = DEFAULT_AUTH_FAILURE_LIMITS,
    private readonly now: () => number = Date.now,
  ) {}

  /** Seconds the address must wait, or 0 when it may try. */
  retryAfterSeconds(address: string): number {
    const times = this.recent(address);
    if (times.length < this.limits.maxFailures) return 0;
    const oldest = times[times.length - this.limits.maxFailures]!;
    return Math.max(1, Math.ceil((oldest + this.limits.windowSeconds * 1000 - this.now()) / 1000));
  }

  recordFailure(address: string): void {
    const times = this.recent(address);
    times.push(this.now());
    // Keep only what the limit needs.
    if (times.length > this.limits.maxFailures) times.splice(0, times.length - this.limits.maxFailures);
    this.failures.delete(address);
    this.failures.set(address, times);
    if (this.failures.size > MAX_TRACKED) this.failures.delete(this.failures.keys().next().value!);
  }

  private recent(address: string): number[] {
    const since = this.now() - this.limits.windowSeconds * 1000;
    const times = (this.failures.get(address) ?? []).filter((t) => t > since);
    if (times.length === 0) this.failures.delete(address);
    return times;
  }
}
