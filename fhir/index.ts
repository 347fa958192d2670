/** The FHIR domain's public surface. */
export { systemContext } from './access.js';
export type { AccessContext } from './access.js';
export { AuditLog } from './audit/audit-log.js';
export { capabilityStatement } from './capability.js';
export { openDatabase } from './db/database.js';
export type { Database, Queryable } from './db/database.js';
export { loadDefinitions, RESOURCE_TYPES, isSupportedType } from './definitions.js';
export { FhirError, badRequest, notFound, outcome, toFhirError, payloadTooLarge, unsupportedMediaType } from './errors.js';
export { processBundle } from './rest/bundle.js';
export { dispatch } from './rest/dispatch.js';
export type { RestRequest, RestResponse, RestEnvironment, Method } from './rest/dispatch.js';
export { migrate } from './schema/migrate.js';
export { getCatalog } from './search/catalog.js';
export { ResourceStore } from './store/store.js';
export type { StoredResource } from './store/store.js';
