import type { AuditRecord } from '@motus/sdk';

export type AuditFormat = 'jsonl' | 'csv';

const COLUMNS = ['seq', 'at', 'user', 'action', 'outcome', 'vm', 'source', 'destination', 'task', 'downtimeMs', 'detail', 'prevHash', 'hash'] as const;

/** JSON Lines: one record per line, as the API returns them (hashes included, so a copy can be verified elsewhere). */
export function toJsonLines(records: AuditRecord[]): string {
  return records.map((r) => JSON.stringify(r) + '\n').join('');
}

/** RFC 4180 CSV with a header row; `detail` is a JSON cell. */
export function toCsv(records: AuditRecord[]): string {
  const lines = [COLUMNS.join(',')];
  for (const record of records) {
    lines.push(
      COLUMNS.map((column) => {
        const value = record[column];
        return csvCell(value === undefined ? '' : typeof value === 'object' ? JSON.stringify(value) : String(value));
      }).join(','),
    );
  }
  return lines.join('\r\n') + '\r\n';
}

function csvCell(text: string): string {
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}
