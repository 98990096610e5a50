import { expect } from 'chai';
import { mergePcaps } from '@motus/core';
import { pcapGlobalHeader, pcapRecord } from '@motus/net-virt';

const frame = (tag: number) => Buffer.alloc(60, tag);
const file = (...records: Array<[number, number]>) => Buffer.concat([pcapGlobalHeader(), ...records.map(([ms, tag]) => pcapRecord(frame(tag), ms))]);

describe('pcap merge (a network captured on several hosts)', () => {
  it('interleaves the records of every file by time, keeping one global header', () => {
    const merged = mergePcaps([
      { label: 'host-a', pcap: file([1_000.5, 1], [1_003, 3]) },
      { label: 'host-b', pcap: file([1_001, 2], [1_004.25, 4]) },
      { label: 'host-c', pcap: file() },
    ]);
    if (!merged.ok) throw new Error(merged.reason);
    expect(merged.records).to.equal(4);
    expect(merged.pcap.subarray(0, 24)).to.deep.equal(pcapGlobalHeader());
    const tags: number[] = [];
    for (let offset = 24; offset < merged.pcap.length; offset += 16 + merged.pcap.readUInt32LE(offset + 8)) tags.push(merged.pcap[offset + 16]!);
    expect(tags).to.deep.equal([1, 2, 3, 4]);
  });

  it('reports a file that is not a capture or ends inside a record instead of reading past it', () => {
    expect(mergePcaps([])).to.deep.equal({ ok: false, reason: 'nothing to merge' });
    const notPcap = mergePcaps([{ label: 'host-a', pcap: Buffer.from('not a capture at all, no no no') }]);
    expect(notPcap).to.deep.include({ ok: false });
    const whole = file([1_000, 1]);
    for (const cut of [whole.length - 1, 24 + 8]) {
      const result = mergePcaps([{ label: 'host-b', pcap: whole.subarray(0, cut) }]);
      expect(result.ok, `cut at ${cut}`).to.equal(false);
      if (!result.ok) expect(result.reason).to.match(/^host-b ends inside a record/);
    }
  });
});
