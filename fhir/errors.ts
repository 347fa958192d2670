/**
 * Domain errors as values: a FhirError carries the HTTP status it means and the
 * OperationOutcome a client receives. The server turns it into a response in one place.
 */
import { OperationOutcomeError } from '@medplum/core';
import type { OperationOutcome, OperationOutcomeIssue } from '@medplum/fhirtypes';

type IssueCode = OperationOutcomeIssue['code'];

export class FhirError extends Error {
  constructor(
    readonly status: number,
    readonly outcome: OperationOutcome
  ) {
    super(outcome.issue?.[0]?.diagnostics ?? outcome.issue?.[0]?.details?.text ?? `HTTP ${status}`);
  }
}

export function outcome(code: IssueCode, text: string, expression?: string[], severity: 'error' | 'warning' | 'information' = 'error'): OperationOutcome {
  return {
    resourceType: 'OperationOutcome',
    issue: [{ severity, code, details: { text }, ...(expression?.length ? { expression } : {}) }],
  };
}

const fail = (status: number, code: IssueCode) => (text: string, expression?: string[]) =>
  new FhirError(status, outcome(code, text, expression));

export const badRequest = fail(400, 'invalid');
export const unauthorized = fail(401, 'login');
export const forbidden = fail(403, 'forbidden');
export const notFound = fail(404, 'not-found');
export const methodNotAllowed = fail(405, 'not-supported');
export const conflict = fail(409, 'conflict');
export const gone = fail(410, 'deleted');
export const preconditionFailed = fail(412, 'conflict');
export const payloadTooLarge = fail(413, 'too-costly');
export const unsupportedMediaType = fail(415, 'not-supported');
export const unprocessable = fail(422, 'business-rule');
export const tooManyRequests = fail(429, 'throttled');

/** PostgreSQL's query_canceled: `statement_timeout` (or a cancel) stopped the statement. */
const QUERY_CANCELED = '57014';
/** SQLSTATE of "invalid byte sequence for encoding UTF8: 0x00". */
const CHARACTER_NOT_IN_REPERTOIRE = '22021';

/**
 * The database connection went away under the request: class 08 (connection exception),
 * 57P01–57P03 (the server terminated it, is shutting down, or cannot accept connections),
 * or node-postgres's own words for a socket that closed, a client left unusable by it, or
 * no connection to be had in time.
 */
export function isConnectionLoss(err: unknown): boolean {
  const { code, message } = (err ?? {}) as { code?: unknown; message?: unknown };
  return (
    (typeof code === 'string' && (code.startsWith('08') || ['57P01', '57P02', '57P03'].includes(code))) ||
    (typeof message === 'string' && /^Connection terminated|is not queryable$|^timeout exceeded when trying to connect$/.test(message))
  );
}

/** Converts anything thrown into a FhirError; unknown errors become an opaque 500. */
export function toFhirError(err: unknown): FhirError {
  if (err instanceof FhirError) {
    return err;
  }
  if (err instanceof OperationOutcomeError) {
    // Validation failures from @medplum/core: the resource is invalid.
    return new FhirError(400, err.outcome);
  }
  if ((err as { code?: unknown } | undefined)?.code === QUERY_CANCELED) {
    // Not the client's fault and likely to pass on a retry: 503 (with Retry-After), not a 500.
    return new FhirError(503, outcome('timeout', 'The database took too long to answer; try again shortly'));
  }
  if (isConnectionLoss(err)) {
    // The transaction rolled back with the connection; the pool reconnects, so a retry works.
    return new FhirError(503, outcome('transient', 'The database connection was lost; try again shortly'));
  }
  if ((err as { code?: unknown } | undefined)?.code === CHARACTER_NOT_IN_REPERTOIRE) {
    // PostgreSQL text cannot hold NUL: a search value, id or form field carrying one is bad input.
    return new FhirError(400, outcome('invalid', 'The request contains a NUL character, which no value may hold'));
  }
  return new FhirError(500, outcome('exception', 'Internal server error'));
}

export function okOutcome(text: string): OperationOutcome {
  return outcome('informational', text, undefined, 'information');
}
