import { html, nothing, render } from 'lit-html';
import { ApiClient, ApiError } from './api-client.js';
import type { AppContext } from './app-context.js';
import { SiteState } from './site-state.js';
import { auditView } from './views/audit.js';
import { hostsView } from './views/hosts.js';
import { migrationsView } from './views/migrations.js';
import { vmsView } from './views/vms.js';
import { wizardView } from './views/wizard.js';

const TOKEN_KEY = 'motus.token';
const VIEWS = { hosts: hostsView, vms: vmsView, migrations: migrationsView, migrate: wizardView, audit: auditView } as const;
type ViewName = keyof typeof VIEWS;
const LABELS: Record<ViewName, string> = { hosts: 'Hosts', vms: 'VMs', migrations: 'Migrations', migrate: 'Migrate', audit: 'Audit' };

const root = document.getElementById('app')!;
let app: AppContext | undefined;
let stream: 'connecting' | 'live' | 'lost' = 'connecting';
let session: AbortController | undefined;
let framePending = false;
/** Migrations whose own event stream is being read (running ones, and any opened in the detail view). */
const followed = new Set<string>();

function currentView(): ViewName {
  const name = location.hash.replace(/^#\/?/, '').split('/')[0] as ViewName;
  return name in VIEWS ? name : 'migrations';
}

function draw(): void {
  framePending = false;
  if (!app) {
    render(signInView(), root);
    return;
  }
  const view = currentView();
  const a = app;
  const [, selected] = location.hash.replace(/^#\/?/, '').split('/');
  a.selectedMigration = selected || undefined;
  if (a.selectedMigration) follow(a, a.selectedMigration);
  render(
    html`<header>
        <h1>Motus</h1>
        <nav>${(Object.keys(VIEWS) as ViewName[]).map((v) => html`<a href="#${v}" class=${v === view ? 'active' : ''} data-nav=${v}>${LABELS[v]}</a>`)}</nav>
        <span class="who" data-field="who">${a.me.user} · ${a.me.role}</span>
        <span class="stream stream-${stream}" data-field="stream" title="the server's event stream">${stream === 'live' ? '● live' : stream === 'lost' ? '○ reconnecting' : '○ connecting'}</span>
        <button class="secondary" @click=${signOut}>Sign out</button>
      </header>
      <main>${VIEWS[view](a)}</main>`,
    root,
  );
}

function refresh(): void {
  if (framePending) return;
  framePending = true;
  requestAnimationFrame(draw);
}

let signInError: string | undefined;
function signInView() {
  return html`<form class="sign-in" @submit=${(e: Event) => {
    e.preventDefault();
    const token = (new FormData(e.target as HTMLFormElement).get('token') as string).trim();
    void signIn(token);
  }}>
    <h1>Motus</h1>
    <p>Sign in with your API token (<code>motus token create USER</code>; the first admin's is in the state folder's <code>client.json</code>).</p>
    <input type="password" name="token" placeholder="API token" autocomplete="off" required />
    <button type="submit">Sign in</button>
    ${signInError ? html`<p class="error" data-field="sign-in-error">${signInError}</p>` : nothing}
  </form>`;
}

async function signIn(token: string): Promise<void> {
  const api = new ApiClient(token);
  try {
    const me = await api.whoami();
    sessionStorage.setItem(TOKEN_KEY, token);
    signInError = undefined;
    app = {
      state: new SiteState(),
      api,
      me,
      refresh,
      go: (view, migrationId) => {
        location.hash = migrationId ? `${view}/${migrationId}` : view;
      },
    };
    void connect(app);
  } catch (err) {
    sessionStorage.removeItem(TOKEN_KEY);
    signInError = err instanceof ApiError ? `${err.code}: ${err.message}` : String(err);
  }
  refresh();
}

function signOut(): void {
  session?.abort();
  sessionStorage.removeItem(TOKEN_KEY);
  app = undefined;
  followed.clear();
  refresh();
}

/**
 * Opens the site's event stream first, then reads the inventory, so nothing that
 * happens in between is missed; every change after that arrives on the stream.
 * A lost stream (server restart) is opened again after a pause.
 */
async function connect(a: AppContext): Promise<void> {
  session = new AbortController();
  const { signal } = session;
  while (!signal.aborted && app === a) {
    stream = 'connecting';
    refresh();
    try {
      for await (const event of a.api.siteEvents(signal, () => void loadSnapshot(a))) {
        a.state.apply(event);
        if (event.stream === 'migration' && event.type === 'requested') follow(a, event.migrationId);
        refresh();
      }
    } catch {
      // Reported by the banner; tried again below.
    }
    if (signal.aborted) return;
    stream = 'lost';
    refresh();
    await new Promise((resolve) => setTimeout(resolve, 2_000));
  }
}

async function loadSnapshot(a: AppContext): Promise<void> {
  try {
    const [hosts, vms, migrations] = await Promise.all([a.api.hosts(), a.api.vms(), a.api.migrations()]);
    a.state.load(hosts, vms, migrations);
    for (const m of migrations) if (m.state === 'running' || m.state === 'queued') follow(a, m.id);
    stream = 'live';
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) signOut();
  }
  refresh();
}

/** Reads a migration's events from its first one (charts of a migration already under way, or finished). */
function follow(a: AppContext, id: string): void {
  if (followed.has(id) || !session) return;
  followed.add(id);
  void (async () => {
    try {
      for await (const event of a.api.migrationEvents(id, session!.signal)) {
        a.state.applyMigration(event);
        refresh();
      }
    } catch {
      followed.delete(id);
    }
  })();
}

window.addEventListener('hashchange', refresh);
const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) void signIn(saved);
else refresh();
