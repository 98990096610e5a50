import { redact, type LogLevel, type Logger } from '@motus/sdk';
import { currentRequestId } from './request-context.js';

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface LogSink {
  write(line: string): void;
}

/**
 * JSON-lines logger: one object per line with time, level, message and fields,
 * plus the request id of the API call being served (see request-context.ts).
 * Every line goes through the redaction layer, so a secret handed to a log call
 * (a token, a CHAP secret, a key) is written as [redacted].
 */
export class JsonLogger implements Logger {
  constructor(
    private readonly sink: LogSink,
    private readonly minLevel: LogLevel = 'info',
    private readonly fields: Record<string, unknown> = {},
  ) {}

  debug(msg: string, fields?: Record<string, unknown>): void {
    this.log('debug', msg, fields);
  }
  info(msg: string, fields?: Record<string, unknown>): void {
    this.log('info', msg, fields);
  }
  warn(msg: string, fields?: Record<string, unknown>): void {
    this.log('warn', msg, fields);
  }
  error(msg: string, fields?: Record<string, unknown>): void {
    this.log('error', msg, fields);
  }
  child(fields: Record<string, unknown>): Logger {
    return new JsonLogger(this.sink, this.minLevel, { ...this.fields, ...fields });
  }

  private log(level: LogLevel, msg: string, fields?: Record<string, unknown>): void {
    if (LEVELS[level] < LEVELS[this.minLevel]) return;
    const requestId = currentRequestId();
    this.sink.write(JSON.stringify(redact({ time: new Date().toISOString(), level, msg, ...(requestId ? { requestId } : {}), ...this.fields, ...fields })) + '\n');
  }
}

export function logLevelFromEnv(): LogLevel {
  const level = process.env.MOTUS_LOG_LEVEL;
  return level === 'debug' || level === 'info' || level === 'warn' || level === 'error' ? level : 'info';
}

/** A logger writing to a file descriptor stream (stderr by default). */
export function createLogger(fields: Record<string, unknown> = {}, sink: LogSink = process.stderr): Logger {
  return new JsonLogger(sink, logLevelFromEnv(), fields);
}
