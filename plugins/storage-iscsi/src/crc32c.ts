/** CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the iSCSI digest. */
const TABLE = (() => {
  const t = new Uint32Array(256 * 4);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  // Slicing-by-4 tables: digests cover every data byte, so speed matters.
  for (let i = 0; i < 256; i++) {
    for (let s = 1; s < 4; s++) t[s * 256 + i] = (t[(s - 1) * 256 + i]! >>> 8) ^ t[t[(s - 1) * 256 + i]! & 0xff]!;
  }
  return t;
})();

export function crc32c(data: Uint8Array, start = 0, end = data.length, seed = 0): number {
  let crc = ~seed >>> 0;
  let i = start;
  for (; i + 4 <= end; i += 4) {
    crc ^= data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    crc = TABLE[768 + (crc & 0xff)]! ^ TABLE[512 + ((crc >>> 8) & 0xff)]! ^ TABLE[256 + ((crc >>> 16) & 0xff)]! ^ TABLE[crc >>> 24]!;
  }
  for (; i < end; i++) crc = TABLE[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return ~crc >>> 0;
}

/** Continues a CRC over several buffers, as a data digest covers data plus padding. */
export function crc32cOf(parts: readonly Uint8Array[]): number {
  let crc = 0;
  for (const p of parts) crc = crc32c(p, 0, p.length, crc);
  return crc;
}
