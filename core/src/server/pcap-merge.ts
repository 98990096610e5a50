/**
 * Merges classic libpcap files (microsecond, little-endian, as the network plugin
 * writes them) into one, records ordered by time: a network captured on several
 * hosts becomes one file tshark reads. Total: a file that is not such a capture, or
 * whose last record is cut, is reported instead of being read past its end.
 */

const GLOBAL_HEADER_BYTES = 24;
const RECORD_HEADER_BYTES = 16;
const MAGIC_LE_MICROSECONDS = 0xa1b2c3d4;

interface PcapRecord {
  seconds: number;
  micros: number;
  bytes: Buffer;
}

export type PcapMergeResult = { ok: true; pcap: Buffer; records: number } | { ok: false; reason: string };

function recordsOf(file: Buffer, label: string): PcapRecord[] | string {
  if (file.length < GLOBAL_HEADER_BYTES || file.readUInt32LE(0) !== MAGIC_LE_MICROSECONDS) return `${label} is not a little-endian microsecond libpcap file`;
  const records: PcapRecord[] = [];
  let offset = GLOBAL_HEADER_BYTES;
  while (offset < file.length) {
    if (file.length - offset < RECORD_HEADER_BYTES) return `${label} ends inside a record header at byte ${offset}`;
    const captured = file.readUInt32LE(offset + 8);
    const end = offset + RECORD_HEADER_BYTES + captured;
    if (end > file.length) return `${label} ends inside a record at byte ${offset}`;
    records.push({ seconds: file.readUInt32LE(offset), micros: file.readUInt32LE(offset + 4), bytes: file.subarray(offset, end) });
    offset = end;
  }
  return records;
}

export function mergePcaps(files: Array<{ label: string; pcap: Buffer }>): PcapMergeResult {
  if (files.length === 0) return { ok: false, reason: 'nothing to merge' };
  const all: PcapRecord[] = [];
  for (const { label, pcap } of files) {
    const records = recordsOf(pcap, label);
    if (typeof records === 'string') return { ok: false, reason: records };
    all.push(...records);
  }
  // Stable: frames of one host keep their order when two hosts stamp the same microsecond.
  all.sort((a, b) => a.seconds - b.seconds || a.micros - b.micros);
  return { ok: true, pcap: Buffer.concat([files[0]!.pcap.subarray(0, GLOBAL_HEADER_BYTES), ...all.map((r) => r.bytes)]), records: all.length };
}
