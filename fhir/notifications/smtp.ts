/**
 * What every mail CareThread sends through SMTP shares: the transport with its timeouts,
 * the domain of Message-IDs, and how a failure is reported. A failure names its kind and
 * SMTP code only, since a server's own words can quote the recipient's address; a 5xx
 * refusal (other than authentication) is final, anything else is worth a retry.
 */
import nodemailer from 'nodemailer';
import type { Transporter } from 'nodemailer';
import { PermanentFailure } from '../outbox/outbox.js';

export function smtpTransport(smtpUrl: string, socketTimeoutMs: number): Transporter {
  return nodemailer.createTransport({ url: smtpUrl, connectionTimeout: 10_000, greetingTimeout: 10_000, socketTimeout: socketTimeoutMs });
}

/** The domain of `Name <local@domain>` (or a bare address), for Message-IDs. */
export function mailDomain(mailFrom: string): string {
  return /@([^>\s]+)>?\s*$/.exec(mailFrom)?.[1] ?? 'carethread.invalid';
}

/** The error to throw for a failed send: PermanentFailure when retrying cannot help. */
export function smtpFailure(err: unknown): Error {
  const { code, responseCode } = (err ?? {}) as { code?: string; responseCode?: number };
  const detail = `SMTP delivery failed (${[code, responseCode].filter(Boolean).join(' ') || 'error'})`;
  if (typeof responseCode === 'number' && responseCode >= 500 && responseCode < 600 && code !== 'EAUTH') {
    return new PermanentFailure(detail);
  }
  return new Error(detail);
}
