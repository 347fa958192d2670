/**
 * The REST layer's Subscription handlers: every write (create, PUT, PATCH) goes through the
 * checks in rules.ts, so what is stored is something the matcher can act on and the writer
 * was allowed to ask for. A PATCH is applied here and stored as an update of the checked
 * result, against the version it was applied to (a concurrent change answers 412).
 */
import type { Subscription } from '@medplum/fhirtypes';
import type { Operation } from 'rfc6902';
import type { AccessContext, Permission } from '../access.js';
import { permit } from '../access.js';
import type { Queryable } from '../db/database.js';
import { badRequest, gone, notFound, preconditionFailed } from '../errors.js';
import type { TypeHandlers } from '../rest/dispatch.js';
import type { ResourceStore, WriteResult } from '../store/store.js';
import { applyJsonPatch } from '../store/json-patch.js';
import { isValidId, validateIncoming } from '../validate.js';
import { assertMayManage, checkSubscription } from './rules.js';

export function subscriptionHandlers(store: ResourceStore): TypeHandlers {
  const inTransaction = <T>(tx: Queryable | undefined, fn: (tx: Queryable) => Promise<T>) => (tx ? fn(tx) : store.transaction(fn));

  /** Scopes and role first: a caller who may not write Subscriptions learns nothing of the rules. */
  const checked = async (tx: Queryable, ctx: AccessContext, body: unknown, permission: Permission): Promise<Subscription> => {
    permit(ctx, 'Subscription', permission);
    assertMayManage(ctx);
    return checkSubscription(tx, store, ctx, validateIncoming(body, 'Subscription') as Subscription);
  };

  const update = (ctx: AccessContext, body: unknown, id: string, options: { ifMatch?: number; tx?: Queryable }): Promise<WriteResult> =>
    inTransaction(options.tx, async (tx) => store.update(ctx, await checked(tx, ctx, body, 'u'), 'Subscription', id, { ...options, tx }));

  return {
    create: (ctx, body, options) =>
      inTransaction(options.tx, async (tx) => store.create(ctx, await checked(tx, ctx, body, 'c'), 'Subscription', { ...options, tx })),

    update,

    patch: (ctx, id, operations, options) =>
      inTransaction(options.tx, async (tx) => {
        permit(ctx, 'Subscription', 'u');
        if (!Array.isArray(operations) || operations.some((op) => !op || typeof op !== 'object' || typeof op.op !== 'string' || typeof op.path !== 'string')) {
          throw badRequest('A JSON Patch body must be an array of operations with "op" and "path"');
        }
        if (!isValidId(id)) {
          throw notFound(`Subscription/${id} does not exist`);
        }
        const rows = await tx.query<{ version: number; deleted: boolean; content: string }>(`SELECT version, deleted, content FROM "Subscription" WHERE id = $1`, [id]);
        const current = rows[0];
        if (!current) {
          throw notFound(`Subscription/${id} does not exist`);
        }
        if (current.deleted) {
          throw gone(`Subscription/${id} has been deleted`);
        }
        if (options.ifMatch !== undefined && options.ifMatch !== current.version) {
          throw preconditionFailed(`Version ${options.ifMatch} is not the current version of Subscription/${id}`);
        }
        const resource = JSON.parse(current.content) as Subscription;
        applyJsonPatch(resource, operations as Operation[]);
        if (resource.resourceType !== 'Subscription' || resource.id !== id) {
          throw badRequest('A patch may not change resourceType or id');
        }
        const result = await update(ctx, resource, id, { ifMatch: current.version, tx });
        return { ...result, outcome: 'updated' };
      }),
  };
}
