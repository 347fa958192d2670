/** JSON Patch (RFC 6902) on a stored resource: every way a patch can fail is the client's 400. */
import type { Resource } from '@medplum/fhirtypes';
import { applyPatch } from 'rfc6902';
import type { Operation } from 'rfc6902';
import { badRequest } from '../errors.js';

/** Applies a JSON Patch in place; any operation that cannot be applied is a 400. */
export function applyJsonPatch(resource: Resource, operations: Operation[]): void {
  let errors: Error[];
  try {
    errors = applyPatch(resource, operations).filter((e) => e !== null);
  } catch (err) {
    // rfc6902 throws (rather than returns) on a "path" or "from" that is not a JSON Pointer.
    throw badRequest(`The patch could not be applied: ${(err as Error).message}`);
  }
  if (errors.length) {
    throw badRequest(`The patch could not be applied: ${errors[0]!.message}`);
  }
}
