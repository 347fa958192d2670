/**
 * The store's access checks, in one place: whether the caller may touch a type at all
 * (scopes, role), whether a particular resource is visible to them (patient compartments,
 * confidentiality, scope query restrictions), and how a search is confined.
 */
import type { Resource } from '@medplum/fhirtypes';
import { canSee, canWrite, compartmentsFor, CONFIDENTIAL_LABEL, permit } from '../access.js';
import type { AccessContext, Permission } from '../access.js';
import type { Queryable } from '../db/database.js';
import { forbidden, notFound } from '../errors.js';
import { executeSearch } from '../search/execute.js';
import { parseSearch } from '../search/parse.js';
import type { Filter } from '../search/parse.js';
import type { SearchScope, TypeScope } from '../search/sql.js';

export interface StoredRow {
  id: string;
  content: string;
  compartments: readonly string[];
  /** The row's security label tokens: all that is left of them once it is deleted. */
  security?: readonly string[] | null;
}

export class AccessGuard {
  constructor(private readonly fhirBaseUrl: string) {}

  /** The caller's confinement for searches (including includes and chains). */
  searchScope(ctx: AccessContext): SearchScope | undefined {
    if (ctx.system) {
      return undefined;
    }
    const cache = new Map<string, TypeScope>();
    return (type) => {
      let scope = cache.get(type);
      if (!scope) {
        scope = this.typeScope(ctx, type, 's');
        cache.set(type, scope);
      }
      return scope;
    };
  }

  /**
   * Throws unless `row` may be read by `ctx`: 404 when it is outside their compartments
   * (so its existence is not revealed), 403 when a scope query restriction excludes it.
   */
  async assertVisible(db: Queryable, ctx: AccessContext, type: string, row: StoredRow, permission: Permission = 'r'): Promise<void> {
    if (ctx.system) {
      return;
    }
    const restrictions = this.restrictions(ctx, type, permission);
    // SMART: the user's own fhirUser resource is readable with their token, even when it lies
    // outside the selected patient (a representative acting for another patient they represent).
    const ownRecord = permission === 'r' && ctx.fhirUser === `${type}/${row.id}`;
    if (!ownRecord && !canSee(ctx, type, row.compartments, ctx.hideConfidential ? securityOf(row) : undefined)) {
      throw notFound(`${type}/${row.id} does not exist`);
    }
    if (restrictions) {
      const request = parseSearch(type, [['_id', row.id]], this.parseOptions());
      const scope: SearchScope = (t) => (t === type ? { restrictions: restrictions.map((q) => this.filters(type, q)) } : undefined);
      const result = await executeSearch(db, request, scope);
      if (!result.matches.length) {
        throw forbidden(`The access token's scope does not cover ${type}/${row.id}`);
      }
    }
  }

  /**
   * The query restrictions on `type` for `ctx` (throws 403 when the type is out of reach):
   * those of the token's scopes, plus any its role carries whatever the scopes say.
   */
  restrictions(ctx: AccessContext, type: string, permission: Permission): [string, string][][] | undefined {
    return withRoleRestriction(ctx, type, permit(ctx, type, permission).restrictions);
  }

  /** Throws 403 unless `ctx` may write `resource`, which lands in `compartments`. */
  assertWritable(ctx: AccessContext, resource: Resource, compartments: readonly string[], permission: Permission): void {
    if (ctx.system) {
      return;
    }
    const type = resource.resourceType;
    const { restrictions } = permit(ctx, type, permission);
    if (restrictions) {
      throw forbidden(`A query-restricted scope cannot ${permission === 'c' ? 'create' : 'change'} ${type} resources`);
    }
    if (!canWrite(ctx, type, compartments)) {
      throw forbidden(`This ${type} concerns a patient the access token does not reach`);
    }
  }

  private typeScope(ctx: AccessContext, type: string, permission: Permission): TypeScope {
    let restrictions: [string, string][][] | undefined;
    try {
      restrictions = this.restrictions(ctx, type, permission);
    } catch {
      return { denied: true };
    }
    return {
      compartments: compartmentsFor(ctx, type),
      excludeSecurity: ctx.hideConfidential ? [CONFIDENTIAL_LABEL] : undefined,
      restrictions: restrictions?.map((q) => this.filters(type, q)),
    };
  }

  private filters(type: string, query: [string, string][]): Filter[] {
    return parseSearch(type, query, this.parseOptions()).filters;
  }

  private parseOptions() {
    return { defaultCount: 1, maxCount: 1, lenient: false, fhirBaseUrl: this.fhirBaseUrl };
  }
}

/**
 * Restrictions a role carries whatever its scopes say. Staff reach websocket Subscriptions
 * only (theirs and colleagues', which hold no secret): a rest-hook Subscription is an
 * integration's configuration, and its channel headers carry that integration's credentials.
 */
function withRoleRestriction(ctx: AccessContext, type: string, restrictions: [string, string][][] | undefined): [string, string][][] | undefined {
  if (type !== 'Subscription' || ctx.role !== 'practitioner') {
    return restrictions;
  }
  const websocketOnly: [string, string] = ['type', 'websocket'];
  return (restrictions ?? [[]]).map((set) => [...set, websocketOnly]);
}

function securityOf({ content, security }: StoredRow): readonly string[] {
  if (!content) {
    return security ?? [];
  }
  const resource = JSON.parse(content) as Resource;
  return (resource.meta?.security ?? []).map((c) => `${c.system ?? ''}|${c.code ?? ''}`);
}
