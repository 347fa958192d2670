/** FHIR R4 Subscriptions: rest-hook (id-only) and websocket channels for new messages. */
export { Subscriptions } from './subscriptions.js';
export type { SubscriptionsOptions } from './subscriptions.js';
export { EVENTS_CHANNEL, REST_HOOK_KIND } from './matcher.js';
export { idOnlyNotification } from './notification.js';
export { SUBSCRIBABLE_TYPES } from './criteria.js';
