/**
 * The copy of one of our resources that goes into the EHR's chart. It carries a stable
 * identifier of ours, so the EHR can create it exactly once (a conditional create) and we can
 * find it again; what the EHR assigns itself (id, version, last updated) is left out; and its
 * references are put in the EHR's terms:
 * - Patients, Practitioners and Encounters are shared: the EHR pushed them to us with its own
 *   ids, so `Patient/123` means the same record on both sides and is kept as it is;
 * - our Communications (partOf, inResponseTo, Provenance.target) become the ids the EHR gave
 *   their copies, found by our identifier;
 * - any other resource of ours (a CareTeam or Group pool, a RelatedPerson, a Binary
 *   attachment) is not in the EHR: the reference becomes absolute, to our FHIR base.
 */
import type { Resource } from '@medplum/fhirtypes';
import { CARETHREAD_IDENTIFIER_SYSTEM } from '../messaging/codes.js';

/** Types whose ids are the same on both sides (the EHR is their source of truth). */
export const SHARED_TYPES: ReadonlySet<string> = new Set(['Patient', 'Practitioner', 'Encounter']);

/**
 * R4 Provenance has no `identifier` element: its copy carries our key as a `meta.tag` of the
 * same system instead, and is found with `_tag`.
 */
const KEYED_BY_TAG: ReadonlySet<string> = new Set(['Provenance']);

const RELATIVE = /^([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[A-Za-z0-9\-.]{1,64})?$/;

/** Our key of a resource in the EHR: `urn:carethread:resource|Communication/<id>`. */
export function chartKey(type: string, id: string): string {
  return `${CARETHREAD_IDENTIFIER_SYSTEM}|${type}/${id}`;
}

/** The search that finds the EHR's copy of one of our resources (also the If-None-Exist query). */
export function chartQuery(type: string, id: string): Record<string, string> {
  return { [KEYED_BY_TAG.has(type) ? '_tag' : 'identifier']: chartKey(type, id) };
}

/** Ids of our Communications the resource refers to, whose EHR ids the copy needs. */
export function referencedCommunications(resource: Resource, ourFhirBase: string): string[] {
  const ids = new Set<string>();
  visitReferences(resource, (reference) => {
    const match = RELATIVE.exec(relative(reference, ourFhirBase));
    if (match?.[1] === 'Communication') {
      ids.add(match[2]);
    }
    return reference;
  });
  return [...ids];
}

export interface CopyOptions {
  ourFhirBase: string;
  /**
   * Our Communication id → the EHR's id of its copy; a Communication missing from the map is
   * not delivered to the EHR and is referred to at our base.
   */
  ehrIds: ReadonlyMap<string, string>;
}

/** The resource as the EHR receives it. */
export function chartCopy(resource: Resource, options: CopyOptions): Resource {
  const { id, meta, ...content } = structuredClone(resource) as Resource & Record<string, unknown>;
  const key = { system: CARETHREAD_IDENTIFIER_SYSTEM, value: `${resource.resourceType}/${id}` };
  // Security labels (a confidential message stays confidential) and our tags describe the
  // content; versionId, lastUpdated and source are the EHR's to assign.
  const kept = {
    ...(meta?.security?.length ? { security: meta.security } : {}),
    ...(meta?.tag?.length ? { tag: meta.tag.filter((t) => t.system !== CARETHREAD_IDENTIFIER_SYSTEM) } : {}),
  };
  const copy = content as Resource & Record<string, unknown>;
  if (KEYED_BY_TAG.has(resource.resourceType)) {
    copy.meta = { ...kept, tag: [...(kept.tag ?? []), { system: key.system, code: key.value }] };
  } else {
    if (Object.keys(kept).length) {
      copy.meta = kept;
    }
    const identifiers = ((copy.identifier as { system?: string }[] | undefined) ?? []).filter((i) => i.system !== CARETHREAD_IDENTIFIER_SYSTEM);
    copy.identifier = [...identifiers, key];
  }
  visitReferences(copy, (reference) => {
    const local = relative(reference, options.ourFhirBase);
    const match = RELATIVE.exec(local);
    if (!match) {
      return reference;
    }
    const [, type, target] = match;
    if (type === 'Communication' && options.ehrIds.has(target)) {
      return `Communication/${options.ehrIds.get(target)}`;
    }
    if (SHARED_TYPES.has(type)) {
      return local;
    }
    return `${options.ourFhirBase}/${local}`;
  });
  return copy;
}

/**
 * Calls `rewrite` on every reference in the resource (`Reference.reference`, and an
 * Attachment's `url` naming one of our Binaries) and stores what it returns.
 */
function visitReferences(node: unknown, rewrite: (reference: string) => string): void {
  if (Array.isArray(node)) {
    node.forEach((item) => visitReferences(item, rewrite));
    return;
  }
  if (!node || typeof node !== 'object') {
    return;
  }
  const object = node as Record<string, unknown>;
  for (const [field, value] of Object.entries(object)) {
    if (typeof value === 'string') {
      if (field === 'reference' || (field === 'url' && /^Binary\/[A-Za-z0-9\-.]{1,64}$/.test(value))) {
        object[field] = rewrite(value);
      }
    } else {
      visitReferences(value, rewrite);
    }
  }
}

function relative(reference: string, ourFhirBase: string): string {
  return reference.startsWith(`${ourFhirBase}/`) ? reference.slice(ourFhirBase.length + 1) : reference;
}
