/**
 * One seeded generator (xorshift32) for every generated-input test, so a failing
 * case can be replayed from the seed the test names.
 */
export function prng(seed: number): () => number {
  let s = seed >>> 0 || 0x9e3779b9;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x1_0000_0000;
  };
}

/** `length` bytes drawn from `next`. */
export function randomBytes(next: () => number, length: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = Math.floor(next() * 256);
  return b;
}
