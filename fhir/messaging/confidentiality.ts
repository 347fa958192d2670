/**
 * Confidentiality travels with a thread: a message written into a confidential thread (its
 * header labelled R) is confidential too, and so is an attachment filed under a confidential
 * resource. Otherwise a proxy, from whom the header is hidden, could read around it: the
 * messages carry its topic and the patient's words, the attachment their pictures.
 */
import type { Binary, Coding, Meta } from '@medplum/fhirtypes';
import { CONFIDENTIAL_LABEL } from '../access.js';
import type { Queryable } from '../db/database.js';
import { isSupportedType } from '../definitions.js';

const label = (c: Coding) => `${c.system ?? ''}|${c.code ?? ''}`;

/** The confidentiality labels (R) of a resource. */
export function confidentialityOf(resource: { meta?: Meta }): Coding[] {
  return (resource.meta?.security ?? []).filter((c) => label(c) === CONFIDENTIAL_LABEL);
}

/** `resource` carrying `labels` as well as its own security labels. */
export function withLabels<T extends { meta?: Meta }>(resource: T, labels: Coding[]): T {
  const own = resource.meta?.security ?? [];
  const missing = labels.filter((l) => !own.some((c) => label(c) === label(l)));
  return missing.length ? { ...resource, meta: { ...resource.meta, security: [...own, ...missing] } } : resource;
}

/** A Binary upload carrying the confidentiality of the resource named as its security context. */
export async function withContextConfidentiality(db: Queryable, body: unknown): Promise<unknown> {
  const binary = body as Binary | undefined;
  const reference = binary && typeof binary === 'object' && binary.resourceType === 'Binary' ? binary.securityContext?.reference : undefined;
  const [type, id] = (reference ?? '').split('/').slice(-2);
  if (!type || !id || !isSupportedType(type) || !/^[A-Za-z0-9\-.]{1,64}$/.test(id)) {
    return body;
  }
  const rows = await db.query<{ content: string }>(`SELECT content FROM "${type}" WHERE id = $1`, [id]);
  return rows[0] ? withLabels(binary!, confidentialityOf(JSON.parse(rows[0].content) as { meta?: Meta })) : body;
}
