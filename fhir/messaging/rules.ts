/**
 * Who may change what after the fact: a message, once sent, is part of the record — the
 * patient side cannot edit or delete it; staff may close or reassign a thread (update the
 * header's status) — the thread's Task is staff's alone to write, and every attachment a
 * user uploads is checked.
 */
import type { Binary } from '@medplum/fhirtypes';
import type { AccessContext } from '../access.js';
import { forbidden, badRequest } from '../errors.js';
import type { Method } from '../rest/dispatch.js';
import { checkAttachment } from './attachments.js';

export function checkCommunicationChange(ctx: AccessContext, method: Method): void {
  if (ctx.role === 'patient' || ctx.role === 'representative') {
    throw forbidden(`Sent messages are part of the record and cannot be ${method === 'DELETE' ? 'deleted' : 'changed'}`);
  }
}

/**
 * A thread's Task is the practice's work item (owner, due time, done or not): the patient
 * side may read it but not create, reassign, complete or delete one.
 */
export function checkTaskWrite(ctx: AccessContext): void {
  if (ctx.role === 'patient' || ctx.role === 'representative') {
    throw forbidden('Tasks are the practice’s work items; patients and representatives cannot create or change them');
  }
}

/**
 * Attachment rules for Binary content written by people (patients, representatives, staff).
 * CareThread's own writes and integrating systems (an EHR filing documents of its own
 * kinds) are not held to the attachment allowlist.
 */
export function checkBinary(ctx: AccessContext, body: unknown, maxBytes: number): void {
  if (ctx.system || ctx.role === 'client') {
    return;
  }
  const binary = body as Binary | undefined;
  if (!binary || typeof binary !== 'object' || binary.resourceType !== 'Binary') {
    return; // validation reports it
  }
  if (binary.data !== undefined && typeof binary.data !== 'string') {
    throw badRequest('Binary.data must be base64', ['Binary.data']);
  }
  checkAttachment(binary.contentType, Buffer.from(binary.data ?? '', 'base64'), maxBytes);
}
