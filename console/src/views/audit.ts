import { html, nothing } from 'lit-html';
import type { AuditRecord, AuditVerification } from '@motus/sdk';
import type { AppContext } from '../app-context.js';
import { ApiError } from '../api-client.js';
import { ms, time } from '../format.js';

interface AuditFilter {
  vm: string;
  user: string;
  host: string;
  action: string;
  since: string;
}

const filter: AuditFilter = { vm: '', user: '', host: '', action: '', since: '' };
let records: AuditRecord[] = [];
let appendedSeen = 0;
let verification: { ok: true; result: AuditVerification } | { ok: false; code: string; message: string; record?: number } | undefined;
let loaded = false;

function matches(record: AuditRecord): boolean {
  return (
    (!filter.vm || record.vm === filter.vm) &&
    (!filter.user || record.user === filter.user) &&
    (!filter.host || record.source === filter.host || record.destination === filter.host) &&
    (!filter.action || record.action.includes(filter.action)) &&
    (!filter.since || record.at >= new Date(filter.since).toISOString())
  );
}

/** Reads the trail (server-side filters) and checks its hash chain. */
export async function loadAudit(app: AppContext): Promise<void> {
  const query = new URLSearchParams();
  for (const key of ['vm', 'user', 'host'] as const) if (filter[key]) query.set(key, filter[key]);
  if (filter.since) query.set('since', new Date(filter.since).toISOString());
  appendedSeen = app.state.auditAppended.length;
  records = (await app.api.audit(query)).filter(matches);
  try {
    verification = { ok: true, result: await app.api.verifyAudit() };
  } catch (err) {
    verification = err instanceof ApiError ? { ok: false, code: err.code, message: err.message, ...(typeof err.data.record === 'number' ? { record: err.data.record } : {}) } : { ok: false, code: 'MOTUS_E_INTERNAL', message: String(err) };
  }
  loaded = true;
  app.refresh();
}

export function auditView(app: AppContext) {
  if (!loaded) void loadAudit(app);
  // Records the server pushed since the last load join the table when they match the filter.
  for (const record of app.state.auditAppended.slice(appendedSeen)) if (matches(record) && !records.some((r) => r.seq === record.seq)) records.push(record);
  appendedSeen = app.state.auditAppended.length;
  const field = (key: keyof AuditFilter, label: string, type = 'text') =>
    html`<label>${label} <input type=${type} name=${key} .value=${filter[key]} @input=${(e: Event) => (filter[key] = (e.target as HTMLInputElement).value)} /></label>`;
  const bad = verification && !verification.ok ? verification.record : undefined;
  return html`<section data-view="audit">
    <h2>Audit trail</h2>
    ${verification === undefined
      ? html`<p class="muted">verifying…</p>`
      : verification.ok
        ? html`<p class="verified" data-field="verification">✓ chain verified: ${verification.result.records} records, head ${verification.result.headHash.slice(0, 16)}…</p>`
        : html`<p class="error" data-field="verification">✗ ${verification.code}: ${verification.message}</p>`}
    <form class="filters" @submit=${(e: Event) => {
      e.preventDefault();
      void loadAudit(app);
    }}>
      ${field('vm', 'VM')} ${field('user', 'user')} ${field('host', 'host')} ${field('action', 'action contains')} ${field('since', 'since', 'datetime-local')}
      <button type="submit">Filter</button>
    </form>
    <table>
      <thead><tr><th>#</th><th>time</th><th>user</th><th>action</th><th>outcome</th><th>VM</th><th>hosts</th><th>task</th><th>downtime</th><th>details</th></tr></thead>
      <tbody>
        ${[...records].reverse().map(
          (r) => html`<tr data-audit=${r.seq} data-task=${r.task ?? ''} class=${bad !== undefined && r.seq >= bad ? 'tampered' : ''}>
            <td>${r.seq}</td><td>${time(r.at)}</td><td>${r.user}</td><td>${r.action}</td><td>${r.outcome}</td><td>${r.vm ?? ''}</td>
            <td>${r.source ? `${r.source} → ${r.destination ?? ''}` : ''}</td><td>${r.task ?? ''}</td><td>${r.downtimeMs === undefined ? '' : ms(r.downtimeMs)}</td>
            <td class="muted">${r.detail ? JSON.stringify(r.detail) : nothing}</td>
          </tr>`,
        )}
      </tbody>
    </table>
  </section>`;
}
