/**
 * What a failed delivery to the EHR means for the outbox: worth retrying later (the EHR is
 * down, slow, busy or mid-conflict) or not (it refuses this resource, and will refuse it
 * again). The message recorded as the entry's `last_error` is ours, short and free of PHI:
 * a status and a code, never the EHR's diagnostics (which may echo the message back).
 */
import { PermanentFailure } from '../outbox/outbox.js';

/** A retryable failure whose message we wrote ourselves (safe to record as is). */
export class EhrDeliveryError extends Error {}

/** Statuses that say "not now" rather than "never". 401 is retried after a new token. */
const RETRYABLE_4XX = new Set([401, 408, 409, 412, 425, 429]);

/** The HTTP status of a fhir-kit-client error (or of our own token request). */
export function statusOf(err: unknown): number | undefined {
  const status = (err as { response?: { status?: unknown } } | undefined)?.response?.status;
  return typeof status === 'number' ? status : undefined;
}

/** Turns whatever a delivery threw into what the outbox should record and do. */
export function deliveryFailure(err: unknown, what: string): Error {
  if (err instanceof PermanentFailure || err instanceof EhrDeliveryError) {
    return err;
  }
  const status = statusOf(err);
  if (status !== undefined) {
    const answer = `${status}${issueCode(err) ? ` ${issueCode(err)}` : ''}`;
    if (status >= 500 || RETRYABLE_4XX.has(status)) {
      return new EhrDeliveryError(`EHR answered ${answer} to ${what}`);
    }
    if (status >= 400) {
      return new PermanentFailure(`EHR refused ${what} (${answer})`);
    }
    return new EhrDeliveryError(`EHR answered ${answer} to ${what}`);
  }
  return new EhrDeliveryError(networkProblem(err));
}

/** "EHR unreachable (ECONNREFUSED)", "EHR did not answer in time", … */
export function networkProblem(err: unknown): string {
  const name = (err as Error | undefined)?.name;
  if (name === 'TimeoutError' || name === 'AbortError') {
    return 'EHR did not answer in time';
  }
  const cause = (err as { cause?: { code?: unknown } } | undefined)?.cause;
  const code = typeof cause?.code === 'string' && /^[A-Z0-9_]{2,40}$/.test(cause.code) ? cause.code : undefined;
  if (err instanceof TypeError || code) {
    return `EHR unreachable${code ? ` (${code})` : ''}`;
  }
  return `EHR delivery failed (${typeof name === 'string' && /^\w{1,40}$/.test(name) ? name : 'error'})`;
}

/** The first issue code of an OperationOutcome answer (a FHIR code: no PHI). */
function issueCode(err: unknown): string | undefined {
  const data = (err as { response?: { data?: { resourceType?: unknown; issue?: { code?: unknown }[] } } }).response?.data;
  const code = data?.resourceType === 'OperationOutcome' ? data.issue?.[0]?.code : undefined;
  return typeof code === 'string' && /^[a-z-]{1,40}$/.test(code) ? code : undefined;
}
