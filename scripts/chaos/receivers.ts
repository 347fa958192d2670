/**
 * The receiving ends of outbound deliveries during a chaos run, standing in for what is
 * outside the machine: an SMTP server (`smtp-server`) for notice e-mails and an HTTP
 * receiver for rest-hook notifications. Each counts arrivals by the delivery's identity
 * (the e-mail's Message-ID; the notified `Communication/<id>/_history/<v>`), so a delivery
 * sent twice shows up as a count of 2.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';

export interface Receivers {
  smtpUrl: string;
  hookUrl: string;
  /** Message-ID (without angle brackets) → how many times it arrived. */
  mails: Map<string, number>;
  /** `Communication/<id>/_history/<version>` → how many times it was notified. */
  hooks: Map<string, number>;
  close(): Promise<void>;
}

export async function startReceivers(): Promise<Receivers> {
  const mails = new Map<string, number>();
  const hooks = new Map<string, number>();
  const smtp = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData(stream, _session, done) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        const id = /^Message-ID:\s*<([^>]+)>/im.exec(raw)?.[1] ?? 'no-message-id';
        mails.set(id, (mails.get(id) ?? 0) + 1);
        done();
      });
    },
  });
  await new Promise<void>((resolve, reject) => {
    smtp.once('error', reject);
    smtp.listen(0, '127.0.0.1', () => resolve());
  });
  const smtpPort = (smtp.server.address() as AddressInfo).port;
  const hook = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      for (const [, location] of body.matchAll(/"location":"(Communication\/[^"]+)"/g)) {
        hooks.set(location, (hooks.get(location) ?? 0) + 1);
      }
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', () => resolve()));
  const hookPort = (hook.address() as AddressInfo).port;
  return {
    smtpUrl: `smtp://127.0.0.1:${smtpPort}`,
    hookUrl: `http://127.0.0.1:${hookPort}/hook`,
    mails,
    hooks,
    async close() {
      hook.closeAllConnections();
      await new Promise<void>((resolve) => hook.close(() => resolve()));
      await new Promise<void>((resolve) => smtp.close(() => resolve()));
    },
  };
}
