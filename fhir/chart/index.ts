/** Recording in the chart: delivering every exchange to the EHR. Its public surface. */
export { ehrDeliverer, EhrDelivery } from './ehr-delivery.js';
export type { EhrDeliveryOptions } from './ehr-delivery.js';
export { DEFAULT_EHR_SCOPE } from './ehr-token.js';
export type { EhrEndpoint } from './ehr-token.js';
export { chartCopy, chartKey, chartQuery, SHARED_TYPES } from './chart-copy.js';
