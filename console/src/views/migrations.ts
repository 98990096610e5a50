import { html, nothing } from 'lit-html';
import type { MigrationEvent } from '@motus/sdk';
import { canMigrate, type AppContext } from '../app-context.js';
import { mib, ms, rate, time } from '../format.js';
import type { MigrationView } from '../site-state.js';
import { rateChart } from './rate-chart.js';

const PHASES = ['validate', 'prepare', 'precopy', 'switchover', 'announce', 'cleanup'];

function fraction(view: MigrationView): number {
  if (view.summary.state === 'completed') return 1;
  return view.samples.at(-1)?.done ?? 0;
}

export function progressBar(view: MigrationView) {
  const pct = Math.round(fraction(view) * 100);
  return html`<div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow=${pct} data-state=${view.summary.state}>
    <div style=${`width:${pct}%`}></div><span>${pct}%</span>
  </div>`;
}

function describe(event: MigrationEvent): string {
  switch (event.type) {
    case 'requested':
      return `requested by ${event.requestedBy}: ${event.vm} ${event.source} → ${event.destination} (${event.priority})`;
    case 'prepared':
      return `destination waiting for the stream (${event.ms} ms)`;
    case 'switchover':
      return `switchover to ${event.host}`;
    case 'resumed':
      return `running on ${event.host}`;
    case 'announced':
      return `network announced on ${event.host} (${event.ms} ms)`;
    case 'completed':
      return `completed: downtime ${ms(event.downtimeMs)}, total ${ms(event.totalTimeMs)}, ${mib(event.bytes)} in ${event.rounds} rounds`;
    case 'failed':
      return `failed in ${event.phase}: ${event.error.code}: ${event.error.message}`;
    case 'rolled-back':
      return `rolled back: VM ${event.vmState} on ${event.host}`;
    case 'cancelled':
      return `cancelled by ${event.by}`;
    case 'rejected':
      return `rejected: ${event.error.code}: ${event.error.message}`;
    case 'policy':
      return `policy: ${event.action} — ${event.reason}`;
    default:
      return event.type;
  }
}

function detail(app: AppContext, view: MigrationView) {
  const s = view.summary;
  const last = view.samples.at(-1);
  const running = s.state === 'running' || s.state === 'queued';
  return html`<div class="detail" data-detail=${s.id}>
    <h3>${s.vm}: ${s.source} → ${s.destination} <span class="state state-${s.state}" data-field="state">${s.state}</span></h3>
    <ol class="phases">
      ${PHASES.map((p) => html`<li class=${PHASES.indexOf(p) < PHASES.indexOf(s.phase ?? 'validate') || s.state === 'completed' ? 'done' : p === s.phase && running ? 'now' : ''}>${p}</li>`)}
    </ol>
    ${progressBar(view)}
    <div class="figures">
      <span>round <b data-field="round">${last?.round ?? '—'}</b></span>
      <span>left <b>${mib(last?.remainingBytes)}</b></span>
      <span>dirty rate <b class="dirty">${rate(last?.dirtyRateBytesPerSec)}</b></span>
      <span>throughput <b class="throughput">${rate(last?.throughputBytesPerSec)}</b></span>
      <span>ETA <b>${!running || last?.etaMs == null ? '—' : ms(last.etaMs)}</b></span>
    </div>
    ${rateChart(view.samples)}
    <p class="legend"><span class="dirty">■ dirty rate</span> <span class="throughput">■ throughput</span></p>
    ${s.state === 'completed'
      ? html`<p class="final" data-field="final">downtime <b data-field="downtime">${ms(s.downtimeMs)}</b> · total time <b data-field="total">${ms(s.totalTimeMs)}</b> · ${mib(s.bytes)} sent in ${s.rounds ?? '—'} rounds</p>`
      : nothing}
    ${s.error ? html`<p class="error">${s.error.code}: ${s.error.message}</p>` : nothing}
    <h4>Policy steps</h4>
    ${view.policy.length === 0
      ? html`<p class="muted">no convergence step was needed${running ? ' so far' : ''}</p>`
      : html`<ul class="policy">${view.policy.map((p) => html`<li><b>${p.action}</b> — ${p.reason} <span class="muted">${time(p.at)}</span></li>`)}</ul>`}
    <h4>Events</h4>
    <ul class="steps">${view.steps.map((e) => html`<li><span class="muted">${time(e.at)}</span> ${describe(e)}</li>`)}</ul>
    ${running && canMigrate(app.me) ? html`<button class="secondary" @click=${() => void app.api.cancel(s.id).catch((err: Error) => alert(err.message))}>Cancel migration</button>` : nothing}
  </div>`;
}

export function migrationsView(app: AppContext) {
  const views = [...app.state.migrations.values()].sort((a, b) => b.summary.requestedAt.localeCompare(a.summary.requestedAt));
  const selected = app.selectedMigration ? app.state.migrations.get(app.selectedMigration) : views.find((v) => v.summary.state === 'running') ?? views[0];
  return html`<section data-view="migrations">
    <h2>Migrations</h2>
    <div class="split">
      <table class="list">
        <thead><tr><th>VM</th><th>from → to</th><th>state</th><th>phase</th><th>progress</th><th>downtime</th><th>total</th></tr></thead>
        <tbody>
          ${views.map(
            (v) => html`<tr data-migration=${v.summary.id} class=${v === selected ? 'selected' : ''} @click=${() => app.go('migrations', v.summary.id)}>
              <td>${v.summary.vm}</td>
              <td>${v.summary.source} → ${v.summary.destination}</td>
              <td><span class="state state-${v.summary.state}">${v.summary.state}</span></td>
              <td>${v.summary.phase ?? '—'}</td>
              <td>${progressBar(v)}</td>
              <td>${ms(v.summary.downtimeMs)}</td>
              <td>${ms(v.summary.totalTimeMs)}</td>
            </tr>`,
          )}
        </tbody>
      </table>
      ${selected ? detail(app, selected) : html`<p class="muted">No migration yet. Start one from the wizard.</p>`}
    </div>
  </section>`;
}
