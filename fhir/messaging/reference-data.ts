/**
 * Resources CareThread itself publishes, written at start-up when missing or changed: its
 * CodeSystems and the Organization that signs automatic replies.
 */
import type { Organization, Resource } from '@medplum/fhirtypes';
import { systemContext } from '../access.js';
import type { ResourceStore } from '../store/store.js';
import { codeSystems } from './codes.js';

const AUTO_REPLY_ORGANIZATION: Organization = {
  resourceType: 'Organization',
  id: 'carethread',
  active: true,
  name: 'CareThread automatic replies',
};

export async function publishReferenceData(store: ResourceStore, more: Resource[] = []): Promise<void> {
  const ctx = systemContext('start-up');
  for (const resource of [...codeSystems(), AUTO_REPLY_ORGANIZATION, ...more] as Resource[]) {
    let current: Resource | undefined;
    try {
      current = JSON.parse((await store.read(ctx, resource.resourceType, resource.id!)).content) as Resource;
    } catch {
      current = undefined;
    }
    if (!current || JSON.stringify({ ...current, meta: undefined }) !== JSON.stringify({ ...resource, meta: undefined })) {
      await store.update(ctx, resource, resource.resourceType, resource.id!);
    }
  }
}
