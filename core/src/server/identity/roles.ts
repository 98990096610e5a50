import { MotusError, type Role } from '@motus/sdk';

/** Who is asking: the user a bearer token belongs to. */
export interface Principal {
  user: string;
  role: Role;
  /** Id of the token used (never the secret). */
  tokenId: string;
}

export const ROLES: readonly Role[] = ['viewer', 'operator', 'admin'];

/** viewer reads; operator also migrates, starts and stops VMs and keeps schedules; admin also manages users and tokens. */
export function allows(role: Role, needed: Role): boolean {
  return ROLES.indexOf(role) >= ROLES.indexOf(needed);
}

export function requireRole(principal: Principal, needed: Role, what: string): void {
  if (!allows(principal.role, needed)) {
    throw new MotusError('MOTUS_E_FORBIDDEN', `user ${principal.user} is ${principal.role}; ${what} needs ${needed}`, {
      user: principal.user,
      role: principal.role,
      needed,
    });
  }
}
