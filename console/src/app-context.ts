import type { ApiClient, Whoami } from './api-client.js';
import type { SiteState } from './site-state.js';

/** What every view gets: the state to show, who is signed in, and how to act. */
export interface AppContext {
  state: SiteState;
  api: ApiClient;
  me: Whoami;
  /** Redraws the page (batched to one frame). */
  refresh(): void;
  /** Shows a view, optionally focused on one migration. */
  go(view: string, migrationId?: string): void;
  selectedMigration?: string;
}

/** Operators and admins may start migrations; viewers only look. */
export function canMigrate(me: Whoami): boolean {
  return me.role === 'operator' || me.role === 'admin';
}
