/** Notifications without PHI: its public surface. */
export { Notifier } from './notifier.js';
export type { NoticeLog, NotifierOptions } from './notifier.js';
export { notificationOperations } from './operations.js';
export { AppointmentReminders, REMINDER_IDENTIFIER_SYSTEM } from './reminders.js';
export { CHANNELS, decideChannel, describePreference, contactOf } from './channels.js';
export type { Channel } from './channels.js';
