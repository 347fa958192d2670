/** Secure messaging: its public surface. */
export { MESSAGE_CATEGORY_SYSTEM, PORTAL_EVENT_SYSTEM, IMPORTED_TAG, THREAD_TAG, AUTO_REPLY_TAG, CARETHREAD_IDENTIFIER_SYSTEM, codeSystems } from './codes.js';
export { Messaging, AUTO_REPLY_SENDER } from './messages.js';
export { MessageEffects } from './effects.js';
export { Inbox } from './inbox.js';
export { UrgencyScreen, DEFAULT_URGENT_PHRASES } from './urgency.js';
export { messagingOperations } from './operations.js';
export { publishReferenceData } from './reference-data.js';
export { checkBinary, checkCommunicationChange, checkTaskWrite } from './rules.js';
export { ThreadAutoClose } from './auto-close.js';
export { withContextConfidentiality } from './confidentiality.js';
