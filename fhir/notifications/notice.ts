/**
 * The words of a notice. They are the same for every message and every person: that a new
 * message is waiting, and where to sign in. Nothing in them comes from the message, its
 * thread, its sender or the recipient, so no notice can carry health information or a name
 * to whoever else reads the mailbox or the phone.
 */
import { createHash } from 'node:crypto';

export interface NoticeText {
  subject: string;
  text: string;
  html: string;
  sms: string;
}

export function noticeText(portalUrl: string): NoticeText {
  const escaped = escapeHtml(portalUrl);
  return {
    subject: 'You have a new secure message',
    text: [
      'You have a new secure message waiting.',
      '',
      `Sign in to read it: ${portalUrl}`,
      '',
      'For your privacy this e-mail does not include the message. Please do not reply to it.',
    ].join('\n'),
    html:
      '<p>You have a new secure message waiting.</p>' +
      `<p><a href="${escaped}">Sign in to read it</a>: ${escaped}</p>` +
      '<p>For your privacy this e-mail does not include the message. Please do not reply to it.</p>',
    sms: `You have a new secure message. Sign in to read it: ${portalUrl}`,
  };
}

/**
 * A stable token for one notice, from its outbox idempotency key: the same on every retry
 * (so a receiver can recognise a repeat), and revealing nothing of the key itself.
 */
export function noticeToken(idempotencyKey: string): string {
  return createHash('sha256').update(`carethread-notice:${idempotencyKey}`).digest('hex').slice(0, 40);
}

function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}
