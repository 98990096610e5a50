/**
 * Keeps secrets (API and agent tokens, CHAP secrets, private keys, passwords in
 * URLs) out of everything Motus writes down: logs, events, the audit trail. Two
 * nets, because either alone leaks: field names catch a secret put where it
 * belongs (`{ secret: … }`), known values catch one that travelled into a
 * message ("login as motus/s3cret failed").
 */

export const REDACTED = '[redacted]';

/** Field names whose values are secrets whatever they hold. `token` and `key` are not: they name token ids and SCSI reservation keys. */
const SECRET_FIELD = /^(secret|password|passwd|passphrase|authorization|apitoken|agenttoken|privatekey|keypem|chapsecret|mutualsecret|tokensecret)$/i;
const PEM_PRIVATE_KEY = /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)/g;
const BEARER = /\b(Bearer\s+)[A-Za-z0-9._~+/=-]+/g;
/** Users' API tokens carry a prefix so that they are recognised wherever they land. */
const API_TOKEN = /\bmt_[A-Za-z0-9_-]{20,}/g;
/** user:password@ in a URL (iscsi://user%password@portal, nfs://…). */
const URL_PASSWORD = /\b([a-z][a-z0-9+.-]*:\/\/[^/\s:@%]+)[:%]([^@/\s]+)@/gi;

/** The secret values this process knows; every string written down is scrubbed of them. */
const knownSecrets = new Set<string>();

/** Secrets shorter than this are not matched inside other text: they would blank out ordinary words. */
const MIN_SECRET_LENGTH = 6;

/** Adds a secret value (a token, a CHAP secret) to scrub from every later log line, event and audit record. */
export function registerSecret(value: string | undefined): void {
  if (typeof value === 'string' && value.length >= MIN_SECRET_LENGTH) knownSecrets.add(value);
}

/** Registers every string under a secret-named field of a config object (a plugin's config slice). */
export function registerSecretsIn(value: unknown): void {
  walk(value, (key, v) => {
    if (SECRET_FIELD.test(key) && typeof v === 'string') registerSecret(v);
  });
}

/** A string with every known secret and secret-looking part replaced by [redacted]. */
export function redactText(text: string): string {
  let out = text.replace(PEM_PRIVATE_KEY, REDACTED).replace(BEARER, `$1${REDACTED}`).replace(API_TOKEN, REDACTED).replace(URL_PASSWORD, `$1:${REDACTED}@`);
  for (const secret of knownSecrets) if (out.includes(secret)) out = out.split(secret).join(REDACTED);
  return out;
}

/**
 * A copy of `value` safe to write down: secret-named fields blanked, every string
 * scrubbed. Values without secrets come back equal (not always the same object).
 */
export function redact<T>(value: T): T {
  return redactValue(value, 0) as T;
}

function redactValue(value: unknown, depth: number): unknown {
  if (typeof value === 'string') return redactText(value);
  if (value === null || typeof value !== 'object' || depth > 32) return value;
  if (Array.isArray(value)) return value.map((v) => redactValue(v, depth + 1));
  if (value instanceof Error) return redactText(value.message);
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
    out[key] = SECRET_FIELD.test(key) && v !== undefined && v !== null && v !== '' ? REDACTED : redactValue(v, depth + 1);
  }
  return out;
}

function walk(value: unknown, visit: (key: string, value: unknown) => void, depth = 0): void {
  if (value === null || typeof value !== 'object' || depth > 32) return;
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
    visit(key, v);
    walk(v, visit, depth + 1);
  }
}
