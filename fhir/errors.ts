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

/** Converts anything thrown into a FhirError; unknown errors become an opaque 500. */
export function toFhirError(err: unknown): FhirError {
  if (err instanceof FhirError) {
    return err;
  }
  if (err instanceof OperationOutcomeError) {
    // Validation failures from @medplum/core: the resource is invalid.
    return new FhirError(400, err.outcome);
  }
  return new FhirError(500, outcome('exception', 'Internal server error'));
}

export function okOutcome(text: string): OperationOutcome {
  return outcome('informational', text, undefined, 'information');
}
