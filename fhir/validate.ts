/**
 * Structural validation of incoming resources against the R4 StructureDefinitions
 * (`@medplum/core`), plus the checks the REST API itself makes: a JSON object, a supported
 * resource type, the type the URL names, a well-formed id.
 */
import { OperationOutcomeError, validateResource } from '@medplum/core';
import type { Resource } from '@medplum/fhirtypes';
import { isSupportedType, loadDefinitions } from './definitions.js';
import { badRequest, FhirError, notFound } from './errors.js';

export const ID_PATTERN = /^[A-Za-z0-9\-.]{1,64}$/;

export function isValidId(id: string): boolean {
  return ID_PATTERN.test(id);
}

/** Returns the value as a valid resource of `expectedType`, or throws a 400/404 FhirError. */
export function validateIncoming(value: unknown, expectedType?: string): Resource {
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    throw badRequest('The request body must be a FHIR resource (a JSON object)');
  }
  const resourceType = (value as { resourceType?: unknown }).resourceType;
  if (typeof resourceType !== 'string') {
    throw badRequest('The resource has no resourceType', ['resourceType']);
  }
  if (expectedType && resourceType !== expectedType) {
    throw badRequest(`Expected a ${expectedType} but the body is a ${resourceType}`, ['resourceType']);
  }
  if (!isSupportedType(resourceType)) {
    throw notFound(`Resource type ${resourceType} is not supported by this server`, ['resourceType']);
  }
  const id = (value as { id?: unknown }).id;
  if (id !== undefined && (typeof id !== 'string' || !isValidId(id))) {
    throw badRequest('The resource id must be 1-64 letters, digits, "-" or "."', [`${resourceType}.id`]);
  }
  loadDefinitions();
  try {
    validateResource(value as Resource);
  } catch (err) {
    if (err instanceof OperationOutcomeError) {
      const issues = (err.outcome.issue ?? []).filter((i) => i.severity === 'error' || i.severity === 'fatal');
      if (issues.length) {
        throw new FhirError(400, { resourceType: 'OperationOutcome', issue: issues });
      }
    } else {
      throw badRequest('The resource could not be validated');
    }
  }
  return value as Resource;
}
