/**
 * The audit chain on the FHIR API, for auditors, administrators and CareThread itself:
 * - `GET AuditEvent/$chain-head` — the chain's latest entry (sealed first, so it is current)
 *   with a compact JWS over `{position, hash}` made with the server's key, for an auditor to
 *   keep: a later chain that does not extend it has been rewritten;
 * - `GET AuditEvent/$verify-chain` — re-walks the chain (see verify.ts).
 * And the handlers that keep the trail append-only through the API for every caller.
 */
import type { Parameters, ParametersParameter } from '@medplum/fhirtypes';
import type { AccessContext } from '../access.js';
import type { Database } from '../db/database.js';
import { forbidden, methodNotAllowed } from '../errors.js';
import type { Operation, RestRequest, TypeHandlers } from '../rest/dispatch.js';
import type { ResourceStore } from '../store/store.js';
import { chainHead } from './chain.js';
import type { AuditSealer } from './sealer.js';
import { verifyAuditChain } from './verify.js';

export type ChainHeadSigner = (head: { position: number; hash: string }) => Promise<string>;

export function auditChainOperations(db: Database, sealer: AuditSealer, sign: ChainHeadSigner): Record<string, Operation> {
  return {
    'AuditEvent/$chain-head': async (ctx, req) => {
      requireAuditor(ctx, req);
      await sealer.sealNow();
      const head = (await chainHead(db)) ?? { position: 0, hash: '', sealedAt: undefined };
      const parameter: ParametersParameter[] = [
        { name: 'position', valueInteger: head.position },
        { name: 'hash', valueString: head.hash },
        ...(head.sealedAt ? [{ name: 'sealedAt', valueInstant: head.sealedAt }] : []),
        { name: 'signature', valueString: await sign({ position: head.position, hash: head.hash }) },
      ];
      return { status: 200, body: JSON.stringify({ resourceType: 'Parameters', parameter } satisfies Parameters) };
    },
    'AuditEvent/$verify-chain': async (ctx, req) => {
      requireAuditor(ctx, req);
      const result = await verifyAuditChain(db);
      const problem = result.firstProblem;
      const parameter: ParametersParameter[] = [
        { name: 'valid', valueBoolean: result.valid },
        { name: 'checked', valueInteger: result.checked },
        { name: 'pending', valueInteger: result.pending },
        ...(problem
          ? [
              {
                name: 'firstProblem',
                part: [
                  { name: 'kind', valueCode: problem.kind },
                  ...(problem.position !== undefined ? [{ name: 'position', valueInteger: problem.position }] : []),
                  ...(problem.id ? [{ name: 'id', valueString: problem.id }] : []),
                  { name: 'detail', valueString: problem.detail },
                ],
              },
            ]
          : []),
      ];
      return { status: 200, body: JSON.stringify({ resourceType: 'Parameters', parameter } satisfies Parameters) };
    },
  };
}

/**
 * AuditEvent's type handlers: no patch or delete, and a PUT only creates (integrations such
 * as the portal send their events with their own ids), whoever asks, CareThread included.
 */
export function auditEventHandlers(db: Database, store: ResourceStore): TypeHandlers {
  const refuse = (method: string) => methodNotAllowed(`The audit trail is append-only: ${method} of an existing AuditEvent is not allowed`);
  return {
    checkChange: async (_ctx, _id, method) => {
      if (method !== 'PUT') {
        throw refuse(method);
      }
    },
    update: async (ctx, body, id, options) => {
      const [existing] = await (options.tx ?? db).query('SELECT 1 FROM "AuditEvent" WHERE id = $1', [id]);
      if (existing) {
        throw refuse('PUT');
      }
      try {
        return await store.update(ctx, body, 'AuditEvent', id, options);
      } catch (err) {
        // Created by someone else meanwhile: the database's append-only trigger refused the overwrite.
        if (/audit trail is append-only/.test((err as Error)?.message ?? '')) {
          throw refuse('PUT');
        }
        throw err;
      }
    },
  };
}

/** Both operations only read: GET, by an auditor, an administrator or CareThread itself. */
function requireAuditor(ctx: AccessContext, req: RestRequest): void {
  if (req.method !== 'GET') {
    throw methodNotAllowed(`Use GET (not ${req.method})`);
  }
  if (!ctx.system && ctx.role !== 'auditor' && !ctx.admin) {
    throw forbidden('Only an auditor or an administrator may read the audit chain');
  }
}
