import { expect } from 'chai';
import { isMotusError } from '@motus/sdk';
import { nextCronTime, parseCron } from '@motus/core';

function next(expr: string, after: string): string | undefined {
  return nextCronTime(parseCron(expr), new Date(after))?.toISOString();
}

describe('cron parser (5 fields, UTC)', () => {
  it('finds the next time for plain values, ranges, lists and steps', () => {
    expect(next('* * * * *', '2026-03-01T10:00:30Z')).to.equal('2026-03-01T10:01:00.000Z');
    expect(next('30 2 * * *', '2026-03-01T10:00:00Z')).to.equal('2026-03-02T02:30:00.000Z');
    expect(next('*/15 * * * *', '2026-03-01T10:16:00Z')).to.equal('2026-03-01T10:30:00.000Z');
    expect(next('0 9-17/4 * * *', '2026-03-01T10:00:00Z')).to.equal('2026-03-01T13:00:00.000Z');
    expect(next('5,10,55 * * * *', '2026-03-01T10:11:00Z')).to.equal('2026-03-01T10:55:00.000Z');
    expect(next('0 0 1 */3 *', '2026-02-10T00:00:00Z')).to.equal('2026-04-01T00:00:00.000Z');
    expect(next('10/20 * * * *', '2026-03-01T10:31:00Z')).to.equal('2026-03-01T10:50:00.000Z');
  });

  it('understands month and weekday names, Sunday as 0 or 7', () => {
    expect(next('0 12 * jan-mar mon', '2026-03-30T13:00:00Z')).to.equal('2027-01-04T12:00:00.000Z');
    expect(next('0 0 * * SUN', '2026-03-02T00:00:00Z')).to.equal('2026-03-08T00:00:00.000Z');
    expect(next('0 0 * * 7', '2026-03-02T00:00:00Z')).to.equal('2026-03-08T00:00:00.000Z');
    expect(next('0 8 * * mon-fri', '2026-03-06T09:00:00Z')).to.equal('2026-03-09T08:00:00.000Z');
  });

  it('matches either day field when both are restricted, as cron does', () => {
    // 2026-03-13 is a Friday; the 15th comes later.
    expect(next('0 0 15 * fri', '2026-03-10T00:00:00Z')).to.equal('2026-03-13T00:00:00.000Z');
    expect(next('0 0 29 2 *', '2026-03-01T00:00:00Z')).to.equal('2028-02-29T00:00:00.000Z');
  });

  it('refuses malformed expressions, naming the field and the reason', () => {
    const cases: Array<[string, RegExp]> = [
      ['', /expected 5 fields/],
      ['* * * *', /expected 5 fields .*got 4/],
      ['* * * * * *', /got 6/],
      ['60 * * * *', /60 is out of range for the minute field \(0-59\)/],
      ['* 24 * * *', /hour/],
      ['* * 0 * *', /day of month/],
      ['* * * 13 *', /month/],
      ['* * * * 8', /day of week/],
      ['*/0 * * * *', /step '0'/],
      ['5-1 * * * *', /runs backwards/],
      ['a * * * *', /'a' is not a valid minute/],
      ['* * * foo *', /'foo' is not a valid month \(a number or jan…dec\)/],
      ['1,,2 * * * *', /empty list item/],
      ['1/2/3 * * * *', /more than one '\/'/],
      ['0 0 30 2 *', /never fires/],
      ['1-2-3 * * * *', /not a value or a range/],
    ];
    for (const [expr, message] of cases) {
      try {
        parseCron(expr);
        expect.fail(`'${expr}' was accepted`);
      } catch (err) {
        expect(isMotusError(err, 'MOTUS_E_INVALID_REQUEST'), `${expr}: ${String(err)}`).to.equal(true);
        expect((err as Error).message, expr).to.match(message);
        expect((err as Error).message).to.match(/^cron: /);
      }
    }
  });
});
