/**
 * The id-only notification a rest-hook Subscription with payload `application/fhir+json`
 * receives: an R4 `history` Bundle with one entry that names the new resource version —
 * fullUrl, request and response — and carries no `resource`. The receiver reads the
 * resource with its own token, so access is checked (and audited) at that read, and no
 * message text ever travels in a notification.
 */
import type { Bundle } from '@medplum/fhirtypes';

export interface NotifiedVersion {
  type: string;
  id: string;
  version: string;
}

export function idOnlyNotification(fhirBase: string, { type, id, version }: NotifiedVersion, timestamp = new Date().toISOString()): Bundle {
  const created = version === '1';
  return {
    resourceType: 'Bundle',
    type: 'history',
    timestamp,
    entry: [
      {
        fullUrl: `${fhirBase}/${type}/${id}`,
        request: created ? { method: 'POST', url: type } : { method: 'PUT', url: `${type}/${id}` },
        response: { status: created ? '201' : '200', location: `${type}/${id}/_history/${version}`, etag: `W/"${version}"` },
      },
    ],
  };
}
