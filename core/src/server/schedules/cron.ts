import { MotusError } from '@motus/sdk';

/** A parsed 5-field cron expression (minute hour day-of-month month day-of-week), evaluated in UTC. */
export interface CronExpression {
  readonly source: string;
  readonly minutes: ReadonlySet<number>;
  readonly hours: ReadonlySet<number>;
  readonly days: ReadonlySet<number>;
  readonly months: ReadonlySet<number>;
  readonly weekdays: ReadonlySet<number>;
  /** Whether the day-of-month / day-of-week field was '*' (cron ORs the two when both are restricted). */
  readonly anyDay: boolean;
  readonly anyWeekday: boolean;
}

interface FieldSpec {
  name: string;
  min: number;
  max: number;
  names?: readonly string[];
}

const FIELDS: readonly FieldSpec[] = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12, names: ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'] },
  // 7 is Sunday too, as in most crons.
  { name: 'day of week', min: 0, max: 7, names: ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] },
];

/** Parses a cron expression or throws MOTUS_E_INVALID_REQUEST saying which field is wrong and why. */
export function parseCron(source: string, field = 'cron'): CronExpression {
  const parts = source.trim().split(/\s+/);
  if (parts.length !== 5 || parts[0] === '') {
    throw invalid(field, source, `expected 5 fields (minute hour day-of-month month day-of-week), got ${parts[0] === '' ? 0 : parts.length}`);
  }
  const sets = parts.map((part, i) => parseField(part, FIELDS[i]!, field, source));
  const weekdays = new Set([...sets[4]!].map((d) => (d === 7 ? 0 : d)));
  const expression: CronExpression = {
    source,
    minutes: sets[0]!,
    hours: sets[1]!,
    days: sets[2]!,
    months: sets[3]!,
    weekdays,
    anyDay: parts[2] === '*' || parts[2] === '?',
    anyWeekday: parts[4] === '*' || parts[4] === '?',
  };
  if (nextCronTime(expression, new Date(Date.UTC(2000, 0, 1))) === undefined) {
    throw invalid(field, source, 'it never fires (no such date)');
  }
  return expression;
}

function parseField(text: string, spec: FieldSpec, field: string, source: string): Set<number> {
  const out = new Set<number>();
  for (const item of text.split(',')) {
    if (item === '') throw invalid(field, source, `empty list item in the ${spec.name} field`);
    const [rangeText, stepText, extra] = item.split('/');
    if (extra !== undefined) throw invalid(field, source, `'${item}' has more than one '/' in the ${spec.name} field`);
    let step = 1;
    if (stepText !== undefined) {
      if (!/^\d+$/.test(stepText) || Number(stepText) === 0) throw invalid(field, source, `step '${stepText}' in the ${spec.name} field must be a whole number above 0`);
      step = Number(stepText);
    }
    let lo: number;
    let hi: number;
    if (rangeText === '*' || rangeText === '?') {
      lo = spec.min;
      hi = spec.name === 'day of week' ? 6 : spec.max;
    } else {
      const bounds = rangeText!.split('-');
      if (bounds.length > 2) throw invalid(field, source, `'${rangeText}' is not a value or a range in the ${spec.name} field`);
      lo = value(bounds[0]!, spec, field, source);
      hi = bounds.length === 2 ? value(bounds[1]!, spec, field, source) : stepText !== undefined ? spec.max : lo;
      if (hi < lo) throw invalid(field, source, `range ${rangeText} in the ${spec.name} field runs backwards`);
    }
    for (let v = lo; v <= hi; v += step) out.add(v);
  }
  return out;
}

function value(text: string, spec: FieldSpec, field: string, source: string): number {
  const lower = text.toLowerCase();
  const named = spec.names?.indexOf(lower) ?? -1;
  if (named >= 0) return spec.name === 'month' ? named + 1 : named;
  if (!/^\d+$/.test(text)) throw invalid(field, source, `'${text}' is not a valid ${spec.name}${spec.names ? ` (a number or ${spec.names[0]}…${spec.names.at(-1)})` : ''}`);
  const n = Number(text);
  if (n < spec.min || n > spec.max) throw invalid(field, source, `${n} is out of range for the ${spec.name} field (${spec.min}-${spec.max})`);
  return n;
}

function invalid(field: string, source: string, why: string): MotusError {
  return new MotusError('MOTUS_E_INVALID_REQUEST', `${field}: invalid cron expression '${source}': ${why}`, { field, cron: source });
}

function dayMatches(cron: CronExpression, date: Date): boolean {
  const dom = cron.days.has(date.getUTCDate());
  const dow = cron.weekdays.has(date.getUTCDay());
  if (cron.anyDay && cron.anyWeekday) return true;
  if (cron.anyDay) return dow;
  if (cron.anyWeekday) return dom;
  return dom || dow;
}

/** The first time strictly after `after` (to the minute) the expression fires, or undefined within 8 years. */
export function nextCronTime(cron: CronExpression, after: Date): Date | undefined {
  const t = new Date(after.getTime());
  t.setUTCSeconds(0, 0);
  t.setUTCMinutes(t.getUTCMinutes() + 1);
  const limit = after.getTime() + 8 * 366 * 24 * 3600 * 1000;
  while (t.getTime() <= limit) {
    if (!cron.months.has(t.getUTCMonth() + 1)) {
      t.setUTCMonth(t.getUTCMonth() + 1, 1);
      t.setUTCHours(0, 0, 0, 0);
      continue;
    }
    if (!dayMatches(cron, t)) {
      t.setUTCDate(t.getUTCDate() + 1);
      t.setUTCHours(0, 0, 0, 0);
      continue;
    }
    if (!cron.hours.has(t.getUTCHours())) {
      t.setUTCHours(t.getUTCHours() + 1, 0, 0, 0);
      continue;
    }
    if (!cron.minutes.has(t.getUTCMinutes())) {
      t.setUTCMinutes(t.getUTCMinutes() + 1, 0, 0);
      continue;
    }
    return t;
  }
  return undefined;
}
