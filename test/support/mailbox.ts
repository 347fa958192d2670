/**
 * A real SMTP server (smtp-server) on 127.0.0.1 that keeps every mail it receives, for
 * suites that check what CareThread sends: who it went to and the raw MIME, with a helper
 * that reads an attachment's bytes back.
 */
import { SMTPServer } from 'smtp-server';
import { expect } from 'vitest';
import { freePort } from './server.js';

export interface Mail {
  to: string[];
  raw: string;
}

export interface Mailbox {
  port: number;
  /** Every mail received so far, in order. */
  mails: Mail[];
  /** The first mail to `address`, once it has arrived (fails after `timeoutMs`). */
  mailTo(address: string, timeoutMs?: number): Promise<Mail>;
  stop(): Promise<void>;
}

export async function startMailbox(): Promise<Mailbox> {
  const port = await freePort();
  const mails: Mail[] = [];
  const smtp = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    size: 20 * 1024 * 1024,
    onData(stream, session, done) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        mails.push({ to: session.envelope.rcptTo.map((r) => r.address), raw: Buffer.concat(chunks).toString('utf8') });
        done();
      });
    },
  });
  await new Promise<void>((resolve) => smtp.listen(port, '127.0.0.1', () => resolve()));
  const mailTo = async (address: string, timeoutMs = 15_000): Promise<Mail> => {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const mail = mails.find((m) => m.to.includes(address));
      if (mail) {
        return mail;
      }
      if (Date.now() > until) {
        throw new Error(`No mail to ${address} within ${timeoutMs} ms`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  return { port, mails, mailTo, stop: () => new Promise<void>((resolve) => smtp.close(() => resolve())) };
}

/** The bytes of a named attachment of a raw MIME mail (base64 transfer encoding). */
export function attachment(raw: string, filename: string): Buffer {
  const text = raw.replace(/\r\n/g, '\n');
  const at = text.search(new RegExp(`filename="?${filename.replace('.', '\\.')}`));
  expect(at, `attachment ${filename}`).toBeGreaterThan(0);
  const start = text.indexOf('\n\n', at) + 2;
  return Buffer.from(text.slice(start, text.indexOf('\n--', start)), 'base64');
}
