/**
 * Attachment rules for Binary uploads by users: an allowlist of types (images, PDF, plain
 * text), a size limit, and the declared type checked against the bytes, so a script cannot
 * travel as "image/png".
 */
import { payloadTooLarge, unprocessable } from '../errors.js';

export const ATTACHMENT_TYPES = ['image/png', 'image/jpeg', 'image/gif', 'application/pdf', 'text/plain'];

const SIGNATURES: Record<string, (bytes: Buffer) => boolean> = {
  'image/png': (b) => b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])),
  'image/jpeg': (b) => b.length > 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff,
  'image/gif': (b) => ['GIF87a', 'GIF89a'].includes(b.subarray(0, 6).toString('latin1')),
  'application/pdf': (b) => b.subarray(0, 5).toString('latin1') === '%PDF-',
  'text/plain': (b) => isPlainText(b),
};

/** Throws 413/422 unless `data` may be stored as an attachment of `contentType`. */
export function checkAttachment(contentType: string | undefined, data: Buffer, maxBytes: number): void {
  const type = (contentType ?? '').split(';')[0].trim().toLowerCase();
  if (!ATTACHMENT_TYPES.includes(type)) {
    throw unprocessable(`Attachments may be ${ATTACHMENT_TYPES.join(', ')} (got ${type || 'no type'})`, ['Binary.contentType']);
  }
  if (data.length > maxBytes) {
    throw payloadTooLarge(`Attachments may be at most ${maxBytes} bytes`);
  }
  if (!data.length || !SIGNATURES[type](data)) {
    throw unprocessable(`The attachment's content is not ${type}`, ['Binary.data']);
  }
}

function isPlainText(bytes: Buffer): boolean {
  if (bytes.includes(0)) {
    return false;
  }
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    return true;
  } catch {
    return false;
  }
}
