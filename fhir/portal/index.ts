/** The patient record for the portal: view, download, transmit, and the activity history. */
export { portalOperations } from './operations.js';
export type { PortalOptions } from './operations.js';
export { RecordMailer, TRANSMIT_KIND, isMailAddress } from './transmit.js';
