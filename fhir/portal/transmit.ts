/**
 * Transmitting a health record to a third party: the address the patient typed is checked,
 * and the record (as they may see it at that moment) is queued in the outbox, kind
 * `record-transmit`, in the same transaction as the `transmit` portal event, so a
 * transmission the patient was told about is never lost, and never sent without its event.
 * The deliverer mails it through SMTP with the PDF and the FHIR JSON attached; a Direct
 * address travels the same way (SMTP_URL then names the HISP's relay). Nothing here logs
 * or reports the address or the content: failures name the SMTP code only.
 */
import { createHash } from 'node:crypto';
import type { Bundle } from '@medplum/fhirtypes';
import type { Transporter } from 'nodemailer';
import { mailDomain, smtpFailure, smtpTransport } from '../notifications/smtp.js';
import { PermanentFailure } from '../outbox/outbox.js';
import type { Deliverer, OutboxEntry } from '../outbox/outbox.js';
import { recordPdf } from './record-pdf.js';
import { summarize } from './record-summary.js';

export const TRANSMIT_KIND = 'record-transmit';

export interface TransmitPayload {
  to: string;
  /** The record Bundle, as JSON, as the patient could see it when they asked. */
  record: string;
}

const LOCAL = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/;
const LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/** Whether `address` is one plain e-mail or Direct address (`local@domain.tld`, no name, no list). */
export function isMailAddress(address: string): boolean {
  if (address.length > 254) {
    return false;
  }
  const at = address.lastIndexOf('@');
  if (at < 1) {
    return false;
  }
  const local = address.slice(0, at);
  const labels = address.slice(at + 1).split('.');
  return local.length <= 64 && LOCAL.test(local) && labels.length >= 2 && labels.every((l) => LABEL.test(l)) && /^[A-Za-z]{2,63}$/.test(labels.at(-1)!);
}

export interface RecordMailerOptions {
  smtpUrl: string;
  mailFrom: string;
}

/** Sends queued transmissions. */
export class RecordMailer {
  private readonly transport: Transporter;
  private readonly domain: string;

  constructor(private readonly options: RecordMailerOptions) {
    // A record with its PDF is larger than a notice: give the upload longer.
    this.transport = smtpTransport(options.smtpUrl, 60_000);
    this.domain = mailDomain(options.mailFrom);
  }

  /** The outbox deliverer of kind `record-transmit`. */
  readonly deliver: Deliverer = async (entry: OutboxEntry) => {
    const payload = entry.payload as Partial<TransmitPayload> | null;
    if (typeof payload?.to !== 'string' || !isMailAddress(payload.to) || typeof payload.record !== 'string') {
      throw new PermanentFailure('A transmission needs an address and a record');
    }
    const bundle = JSON.parse(payload.record) as Bundle;
    const pdf = await recordPdf(summarize(bundle));
    const token = createHash('sha256').update(entry.idempotencyKey).digest('hex').slice(0, 32);
    try {
      await this.transport.sendMail({
        from: this.options.mailFrom,
        to: payload.to,
        // The subject and body say nothing about the patient: the record travels in the attachments.
        subject: 'A health record sent to you at the patient’s request',
        text:
          'A patient of the practice asked CareThread to send you their health record.\n\n' +
          'Attached: health-record.pdf (readable copy) and health-record.json (the same record as a FHIR R4 Bundle).\n',
        attachments: [
          { filename: 'health-record.pdf', content: pdf, contentType: 'application/pdf' },
          { filename: 'health-record.json', content: payload.record, contentType: 'application/fhir+json' },
        ],
        messageId: `<${token}@${this.domain}>`,
        headers: { 'Auto-Submitted': 'auto-generated' },
      });
    } catch (err) {
      throw smtpFailure(err);
    }
  };

  close(): void {
    this.transport.close();
  }
}
