import { html, nothing } from 'lit-html';
import type { Ranking } from '@motus/sdk';
import { canMigrate, type AppContext } from '../app-context.js';
import { ApiError } from '../api-client.js';
import { mib } from '../format.js';

interface WizardForm {
  vm: string;
  destination: string;
  priority: 'normal' | 'high';
  when: 'now' | 'at' | 'cron';
  at: string;
  cron: string;
  busy: boolean;
  message?: { kind: 'ok' | 'error'; text: string };
}

const form: WizardForm = { vm: '', destination: '', priority: 'normal', when: 'now', at: '', cron: '0 2 * * *', busy: false };

/** The ranking of the VM picked last, as the server's placement engine answered it. */
let ranking: { vm: string; result?: Ranking; error?: string } | undefined;

async function loadRanking(app: AppContext, vm: string): Promise<void> {
  ranking = { vm };
  app.refresh();
  try {
    const result = await app.api.placement(vm);
    if (ranking?.vm === vm) ranking = { vm, result };
  } catch (err) {
    if (ranking?.vm === vm) ranking = { vm, error: err instanceof ApiError ? `${err.code}: ${err.message}` : String(err) };
  }
  app.refresh();
}

/** Ranked destinations first (best first, with the score and its reasons), then the refused ones with theirs. */
function destinations(app: AppContext, set: (patch: Partial<WizardForm>) => void) {
  if (!ranking || !form.vm) return nothing;
  if (ranking.error) return html`<p class="error" data-field="placement-error">${ranking.error}</p>`;
  if (!ranking.result) return html`<p class="muted">ranking the hosts…</p>`;
  const { candidates, refused } = ranking.result;
  return html`${candidates.map(
    (c, i) => html`<label class="candidate" data-destination=${c.host} data-rank=${i + 1}>
      <input type="radio" name="destination" value=${c.host} .checked=${form.destination === c.host} @change=${() => set({ destination: c.host })} />
      <b>${i + 1}. ${c.host}</b> <span class="score">score ${c.score.toFixed(0)}</span>
      <span class="muted">${c.reasons.join(' · ')}${c.mayNotConverge ? ' · may not converge without the policy\'s help' : ''}</span>
    </label>`,
  )}
  ${refused.map(
    (r) => html`<label class="candidate unfit" data-destination=${r.host}>
      <input type="radio" name="destination" value=${r.host} disabled />
      <b>${r.host}</b> <span class="muted">${r.refusals.map((x) => `${x.constraint}: ${x.reason}`).join(' · ')}</span>
    </label>`,
  )}
  ${candidates.length === 0 ? html`<p class="error">No host can take ${form.vm} now.</p>` : nothing}`;
}

async function submit(app: AppContext): Promise<void> {
  form.busy = true;
  form.message = undefined;
  app.refresh();
  try {
    if (form.when === 'now') {
      const summary = await app.api.migrate({ vm: form.vm, destination: form.destination, priority: form.priority });
      form.message = { kind: 'ok', text: `migration ${summary.id} ${summary.state}` };
      Object.assign(form, { vm: '', destination: '' });
      ranking = undefined;
      app.go('migrations', summary.id);
    } else {
      const timing = form.when === 'at' ? { at: new Date(form.at).toISOString() } : { cron: form.cron };
      const schedule = await app.api.schedule({ target: { vms: [form.vm] }, destination: form.destination, priority: form.priority, ...timing });
      form.message = { kind: 'ok', text: `schedule ${schedule.id} created` };
    }
  } catch (err) {
    form.message = { kind: 'error', text: err instanceof ApiError ? `${err.code}: ${err.message}` : String(err) };
  } finally {
    form.busy = false;
    app.refresh();
  }
}

export function wizardView(app: AppContext) {
  const vms = [...app.state.vms.values()].filter((v) => v.state === 'running').sort((a, b) => a.name.localeCompare(b.name));
  const vm = app.state.vms.get(form.vm);
  // The VM moved since it was ranked (its migration ended): rank it again from where it is.
  if (vm && ranking?.vm === vm.name && ranking.result && ranking.result.source !== vm.host) void loadRanking(app, vm.name);
  if (form.destination && !ranking?.result?.candidates.some((c) => c.host === form.destination)) form.destination = '';
  const allowed = canMigrate(app.me);
  const ready = allowed && !form.busy && vm !== undefined && form.destination !== '' && (form.when !== 'at' || form.at !== '') && (form.when !== 'cron' || form.cron.trim() !== '');
  const set = (patch: Partial<WizardForm>) => {
    Object.assign(form, patch);
    app.refresh();
  };
  return html`<section data-view="wizard">
    <h2>Migrate a VM</h2>
    ${allowed ? nothing : html`<p class="notice" data-field="viewer-notice">You are signed in as ${app.me.user} (${app.me.role}): you can look, but starting a migration needs the operator role.</p>`}
    <ol class="wizard">
      <li>
        <label>VM
          <select name="vm" @change=${(e: Event) => {
            set({ vm: (e.target as HTMLSelectElement).value, destination: '' });
            if (form.vm) void loadRanking(app, form.vm);
          }}>
            <option value="" ?selected=${form.vm === ''}>— pick a running VM —</option>
            ${vms.map((v) => html`<option value=${v.name} ?selected=${v.name === form.vm}>${v.name} (on ${v.host}, ${mib(v.spec.memoryMiB * 1048576)})</option>`)}
          </select>
        </label>
      </li>
      <li>
        <fieldset ?disabled=${!vm}>
          <legend>Destination</legend>
          <p class="muted">Every host ranked by the server's placement engine (as <code>motus migrate VM --recommend</code>): balance after the move, headroom, migration cost, migrations already there; refused hosts with the constraint they break.</p>
          ${destinations(app, set)}
        </fieldset>
      </li>
      <li>
        <label>Priority
          <select name="priority" @change=${(e: Event) => set({ priority: (e.target as HTMLSelectElement).value as WizardForm['priority'] })}>
            <option value="normal" ?selected=${form.priority === 'normal'}>normal</option>
            <option value="high" ?selected=${form.priority === 'high'}>high (reserves the memory on the destination)</option>
          </select>
        </label>
      </li>
      <li>
        <fieldset>
          <legend>When</legend>
          <label><input type="radio" name="when" value="now" .checked=${form.when === 'now'} @change=${() => set({ when: 'now' })} /> now</label>
          <label><input type="radio" name="when" value="at" .checked=${form.when === 'at'} @change=${() => set({ when: 'at' })} /> once at
            <input type="datetime-local" name="at" .value=${form.at} @input=${(e: Event) => set({ at: (e.target as HTMLInputElement).value })} /></label>
          <label><input type="radio" name="when" value="cron" .checked=${form.when === 'cron'} @change=${() => set({ when: 'cron' })} /> repeatedly (cron, UTC)
            <input type="text" name="cron" .value=${form.cron} @input=${(e: Event) => set({ cron: (e.target as HTMLInputElement).value })} /></label>
        </fieldset>
      </li>
    </ol>
    <button name="start" ?disabled=${!ready} @click=${() => void submit(app)}>${form.when === 'now' ? 'Start migration' : 'Create schedule'}</button>
    ${form.message ? html`<p class=${form.message.kind} data-field="wizard-message">${form.message.text}</p>` : nothing}
  </section>`;
}
