/**
 * E-mail notices through SMTP (nodemailer). The Message-ID comes from the outbox entry, so a
 * notice sent again after a crash between "sent" and "marked delivered" carries the same
 * Message-ID and can be recognised as a repeat. Failures are reported by kind and SMTP code
 * only: a server's own words can quote the recipient's address.
 */
import nodemailer from 'nodemailer';
import type { Transporter } from 'nodemailer';
import { PermanentFailure } from '../outbox/outbox.js';
import { noticeText, noticeToken } from './notice.js';

export interface EmailOptions {
  smtpUrl: string;
  /** `Name <address>` or an address. */
  mailFrom: string;
  portalUrl: string;
}

export class EmailSender {
  private readonly transport: Transporter;
  private readonly domain: string;

  constructor(private readonly options: EmailOptions) {
    this.transport = nodemailer.createTransport({
      url: options.smtpUrl,
      connectionTimeout: 10_000,
      greetingTimeout: 10_000,
      socketTimeout: 30_000,
    });
    this.domain = /@([^>\s]+)>?\s*$/.exec(options.mailFrom)?.[1] ?? 'carethread.invalid';
  }

  /** Sends the notice; throws PermanentFailure when the server refuses it for good. */
  async send(to: string, idempotencyKey: string): Promise<void> {
    const text = noticeText(this.options.portalUrl);
    try {
      await this.transport.sendMail({
        from: this.options.mailFrom,
        to,
        subject: text.subject,
        text: text.text,
        html: text.html,
        messageId: `<${noticeToken(idempotencyKey)}@${this.domain}>`,
        headers: { 'Auto-Submitted': 'auto-generated' },
      });
    } catch (err) {
      const { code, responseCode } = (err ?? {}) as { code?: string; responseCode?: number };
      const detail = `SMTP delivery failed (${[code, responseCode].filter(Boolean).join(' ') || 'error'})`;
      // 5xx: the server refused this message or recipient; sending it again will not help.
      if (typeof responseCode === 'number' && responseCode >= 500 && responseCode < 600 && code !== 'EAUTH') {
        throw new PermanentFailure(detail);
      }
      throw new Error(detail);
    }
  }

  close(): void {
    this.transport.close();
  }
}
