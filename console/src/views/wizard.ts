import { html, nothing } from 'lit-html';
import type { HostInfo, VmInfo } from '@motus/sdk';
import { canMigrate, type AppContext } from '../app-context.js';
import { ApiError } from '../api-client.js';
import { mib } from '../format.js';
import { hostResources } from './hosts.js';

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

interface Candidate {
  host: HostInfo;
  fits: boolean;
  reasons: string[];
}

/**
 * Destinations for a VM, each with the reasons it can or cannot take it, from what
 * the hosts report (state, free memory, networks). The server's own placement
 * advice (`motus migrate --recommend`) is not on this server yet; when it is, its
 * ranking replaces this list.
 */
export function candidates(vm: VmInfo, hosts: Iterable<HostInfo>): Candidate[] {
  const list: Candidate[] = [];
  for (const host of hosts) {
    const reasons: string[] = [];
    let fits = true;
    const free = host.memoryTotalMiB - host.memoryUsedMiB;
    if (host.name === vm.host) {
      fits = false;
      reasons.push('the VM runs here');
    }
    if (host.state !== 'connected') {
      fits = false;
      reasons.push(host.state === 'maintenance' ? 'in maintenance' : 'agent not answering');
    }
    if (free < vm.spec.memoryMiB) {
      fits = false;
      reasons.push(`${mib(free * 1048576)} free, needs ${mib(vm.spec.memoryMiB * 1048576)}`);
    } else reasons.push(`${mib(free * 1048576)} free`);
    const { networks } = hostResources(host);
    const missing = (vm.spec.nics ?? []).map((n) => n.network).filter((n) => networks.length > 0 && !networks.includes(n));
    if (missing.length > 0) {
      fits = false;
      reasons.push(`no network ${missing.join(', ')}`);
    }
    list.push({ host, fits, reasons });
  }
  // Fitting hosts first, most free memory first: a plain order, not the placement engine's ranking.
  return list.sort((a, b) => Number(b.fits) - Number(a.fits) || b.host.memoryTotalMiB - b.host.memoryUsedMiB - (a.host.memoryTotalMiB - a.host.memoryUsedMiB));
}

async function submit(app: AppContext): Promise<void> {
  form.busy = true;
  form.message = undefined;
  app.refresh();
  try {
    if (form.when === 'now') {
      const summary = await app.api.migrate({ vm: form.vm, destination: form.destination, priority: form.priority });
      form.message = { kind: 'ok', text: `migration ${summary.id} ${summary.state}` };
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
  const options = vm ? candidates(vm, app.state.hosts.values()) : [];
  if (form.destination && !options.some((c) => c.host.name === form.destination && c.fits)) form.destination = '';
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
          <select name="vm" @change=${(e: Event) => set({ vm: (e.target as HTMLSelectElement).value, destination: '' })}>
            <option value="" ?selected=${form.vm === ''}>— pick a running VM —</option>
            ${vms.map((v) => html`<option value=${v.name} ?selected=${v.name === form.vm}>${v.name} (on ${v.host}, ${mib(v.spec.memoryMiB * 1048576)})</option>`)}
          </select>
        </label>
      </li>
      <li>
        <fieldset ?disabled=${!vm}>
          <legend>Destination</legend>
          <p class="muted">Hosts that can take the VM first, with the reasons. Ranked placement advice (<code>--recommend</code>) is not offered by this server yet.</p>
          ${options.map(
            (c) => html`<label class=${c.fits ? 'candidate' : 'candidate unfit'} data-destination=${c.host.name}>
              <input type="radio" name="destination" value=${c.host.name} ?disabled=${!c.fits} .checked=${form.destination === c.host.name} @change=${() => set({ destination: c.host.name })} />
              <b>${c.host.name}</b> <span class="muted">${c.reasons.join(' · ')}</span>
            </label>`,
          )}
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
