/**
 * Typed injection tokens. Every token is a unique symbol carrying the type it
 * resolves to, so `container.resolve(HypervisorDriverToken)` is typed without casts.
 * Ids follow '<area>.<name>'.
 */
declare const tokenType: unique symbol;

export type Token<T> = symbol & { readonly [tokenType]?: T };

const seen = new Set<string>();

export function createToken<T>(id: string): Token<T> {
  if (!/^[a-z][a-z0-9-]*\.[a-z][a-zA-Z0-9.-]*$/.test(id)) {
    throw new TypeError(`token id '${id}' does not follow '<area>.<name>'`);
  }
  if (seen.has(id)) throw new TypeError(`token id '${id}' is already taken`);
  seen.add(id);
  return Symbol.for(`motus:${id}`) as Token<T>;
}

export function tokenId(token: Token<unknown>): string {
  return (token.description ?? '').replace(/^motus:/, '');
}
