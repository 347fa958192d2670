/**
 * Structured logs (pino). Request logs carry the request id, method, route pattern (not the
 * path or query: ids and search values can name patients), status and duration; headers and bodies are never
 * logged, and the redaction list catches secrets that reach a log call by accident.
 */
import pino from 'pino';
import type { Logger } from 'pino';
import type { LogLevel } from './config.js';

export type { Logger };

export function createLogger(level: LogLevel, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'carethread' },
      redact: {
        paths: ['authorization', 'password', 'token', 'access_token', 'refresh_token', 'client_secret', '*.authorization', '*.password', '*.token'],
        censor: '[redacted]',
      },
    },
    destination
  );
}
