/**
 * E-mail notices through SMTP (nodemailer). The Message-ID comes from the outbox entry, so a
 * notice sent again after a crash between "sent" and "marked delivered" carries the same
 * Message-ID and can be recognised as a repeat. Failures are reported by kind and SMTP code
 * only: a server's own words can quote the recipient's address.
 */
import type { Transporter } from 'nodemailer';
import { noticeText, noticeToken } from './notice.js';
import { mailDomain, smtpFailure, smtpTransport } from './smtp.js';

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
    this.transport = smtpTransport(options.smtpUrl, 30_000);
    this.domain = mailDomain(options.mailFrom);
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
      throw smtpFailure(err);
    }
  }

  close(): void {
    this.transport.close();
  }
}
