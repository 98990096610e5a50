/** Reads a capture back with pcap-parser (tests, and tools that check what a switch sent). */
import { createReadStream } from 'node:fs';
import pcapParser from 'pcap-parser';

export interface PcapPacket {
  timeMs: number;
  originalLength: number;
  data: Buffer;
}

const READ_TIMEOUT_MS = 30_000;

export function readPcap(path: string): Promise<{ linkType: number; packets: PcapPacket[] }> {
  return new Promise((resolve, reject) => {
    const parser = pcapParser.parse(createReadStream(path));
    const packets: PcapPacket[] = [];
    let linkType = -1;
    const timer = setTimeout(() => reject(new Error(`reading ${path} took over ${READ_TIMEOUT_MS} ms`)), READ_TIMEOUT_MS);
    parser.on('globalHeader', (h: { linkLayerType: number }) => (linkType = h.linkLayerType));
    parser.on('packet', (p: { header: { timestampSeconds: number; timestampMicroseconds: number; originalLength: number }; data: Buffer }) => {
      packets.push({ timeMs: p.header.timestampSeconds * 1000 + p.header.timestampMicroseconds / 1000, originalLength: p.header.originalLength, data: p.data });
    });
    parser.on('error', (err: Error) => {
      clearTimeout(timer);
      reject(err);
    });
    parser.on('end', () => {
      clearTimeout(timer);
      resolve({ linkType, packets });
    });
  });
}
