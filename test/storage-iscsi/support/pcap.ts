/**
 * Writes iSCSI frames, as the initiator's tap saw them, into a pcap file with
 * Ethernet/IPv4/TCP framing (client 127.0.0.1:40000, target 127.0.0.1:3260),
 * so tshark can dissect exactly the bytes Motus sent and received.
 */
import { writeFileSync } from 'node:fs';

const MSS = 1460;

function ipChecksum(h: Buffer): number {
  let sum = 0;
  for (let i = 0; i < h.length; i += 2) sum += h.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function packet(fromClient: boolean, seq: number, ack: number, flags: number, payload: Buffer): Buffer {
  const eth = Buffer.alloc(14);
  eth.writeUInt16BE(0x0800, 12);
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + 20 + payload.length, 2);
  ip[8] = 64;
  ip[9] = 6;
  Buffer.from([127, 0, 0, 1]).copy(ip, 12);
  Buffer.from([127, 0, 0, 1]).copy(ip, 16);
  ip.writeUInt16BE(ipChecksum(ip), 10);
  const tcp = Buffer.alloc(20);
  tcp.writeUInt16BE(fromClient ? 40000 : 3260, 0);
  tcp.writeUInt16BE(fromClient ? 3260 : 40000, 2);
  tcp.writeUInt32BE(seq >>> 0, 4);
  tcp.writeUInt32BE(ack >>> 0, 8);
  tcp[12] = 5 << 4;
  tcp[13] = flags;
  tcp.writeUInt16BE(65535, 14);
  return Buffer.concat([eth, ip, tcp, payload]);
}

export function writePcap(path: string, frames: Array<{ direction: 'out' | 'in'; frame: Buffer }>): number {
  const records: Buffer[] = [];
  const header = Buffer.alloc(24);
  header.writeUInt32LE(0xa1b2c3d4, 0);
  header.writeUInt16LE(2, 4);
  header.writeUInt16LE(4, 6);
  header.writeUInt32LE(262144, 16);
  header.writeUInt32LE(1, 20);
  records.push(header);
  let t = 0;
  const add = (p: Buffer): void => {
    const rec = Buffer.alloc(16);
    rec.writeUInt32LE(1700000000 + Math.floor(t / 1e6), 0);
    rec.writeUInt32LE(t % 1e6, 4);
    rec.writeUInt32LE(p.length, 8);
    rec.writeUInt32LE(p.length, 12);
    records.push(rec, p);
    t += 10;
  };
  let cseq = 1000;
  let sseq = 5000;
  add(packet(true, cseq - 1, 0, 0x02, Buffer.alloc(0)));
  add(packet(false, sseq - 1, cseq, 0x12, Buffer.alloc(0)));
  add(packet(true, cseq, sseq, 0x10, Buffer.alloc(0)));
  let packets = 3;
  for (const { direction, frame } of frames) {
    for (let at = 0; at < frame.length; at += MSS) {
      const seg = frame.subarray(at, Math.min(frame.length, at + MSS));
      if (direction === 'out') {
        add(packet(true, cseq, sseq, 0x18, seg));
        cseq += seg.length;
      } else {
        add(packet(false, sseq, cseq, 0x18, seg));
        sseq += seg.length;
      }
      packets++;
    }
  }
  writeFileSync(path, Buffer.concat(records));
  return packets;
}
