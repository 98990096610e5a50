import 'reflect-metadata';
import { container as globalContainer, type DependencyContainer } from 'tsyringe';

/**
 * One root container per platform, created fresh (never the global one, so two
 * platforms in one process never share registrations). Children are made per
 * plugin, per host and per migration with createChildContainer() and disposed when
 * their owner stops.
 */
export function createRootContainer(): DependencyContainer {
  return globalContainer.createChildContainer();
}
