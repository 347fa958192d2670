/**
 * SMART scopes: parsing v1 (`patient/Observation.read`) and v2 (`patient/Observation.rs`,
 * with optional query restrictions `?category=…`) resource scopes, deciding which requested
 * scopes a client's registration allows, and answering in the form asked for.
 */
import type { ScopeRule } from '../fhir/access.js';
import { isSupportedType } from '../fhir/definitions.js';

export interface ParsedScope extends ScopeRule {
  raw: string;
  v1: boolean;
}

/** Non-resource scopes this server understands. */
export const SPECIAL_SCOPES = new Set(['openid', 'fhirUser', 'profile', 'launch', 'launch/patient', 'launch/encounter', 'offline_access', 'online_access']);

const V2_ORDER = 'cruds';
const V1_PERMISSIONS: Record<string, string> = { read: 'rs', write: 'cud', '*': 'cruds' };

/** Parses one resource scope; undefined when it is not one (or names an unknown type). */
export function parseScope(raw: string): ParsedScope | undefined {
  const match = /^(patient|user|system)\/([A-Za-z*]+)\.([a-z*]+)(?:\?(.+))?$/.exec(raw);
  if (!match) {
    return undefined;
  }
  const [, context, type, action, query] = match;
  if (type !== '*' && !isSupportedType(type)) {
    return undefined;
  }
  let permissions: string;
  let v1 = false;
  if (V1_PERMISSIONS[action] && query === undefined) {
    permissions = V1_PERMISSIONS[action];
    v1 = true;
  } else if (/^c?r?u?d?s?$/.test(action) && action.length > 0) {
    permissions = action;
  } else {
    return undefined;
  }
  const parsedQuery = query ? ([...new URLSearchParams(query)] as [string, string][]) : undefined;
  return { raw, v1, context: context as ScopeRule['context'], type, permissions, ...(parsedQuery ? { query: parsedQuery } : {}) };
}

export function splitScope(scope: string | undefined): string[] {
  return [...new Set((scope ?? '').split(/\s+/).filter(Boolean))];
}

/** The resource rules a granted scope string carries. */
export function rulesOf(scope: string): ParsedScope[] {
  return splitScope(scope)
    .map(parseScope)
    .filter((s): s is ParsedScope => s !== undefined);
}

/**
 * The part of `requested` that `allowed` (a client's registered scopes) covers. A resource
 * scope is narrowed to the permissions allowed for its type; special scopes pass when
 * registered. Answers keep the requested form (v1 stays v1).
 */
export function grantable(requested: string[], allowed: string[]): string[] {
  const allowedRules = allowed.map(parseScope).filter((s): s is ParsedScope => s !== undefined);
  const result: string[] = [];
  for (const raw of requested) {
    if (SPECIAL_SCOPES.has(raw)) {
      if (allowed.includes(raw)) {
        result.push(raw);
      }
      continue;
    }
    const scope = parseScope(raw);
    if (!scope) {
      continue;
    }
    const covering = allowedRules.filter(
      (a) => a.context === scope.context && (a.type === '*' || a.type === scope.type) && (!a.query || sameQuery(a.query, scope.query))
    );
    const permissions = [...scope.permissions].filter((p) => covering.some((a) => a.permissions.includes(p))).join('');
    if (!permissions) {
      continue;
    }
    if (permissions === scope.permissions) {
      result.push(raw);
    } else {
      result.push(formatScope({ ...scope, permissions, v1: scope.v1 && Object.values(V1_PERMISSIONS).includes(permissions) }));
    }
  }
  return result;
}

/** Keeps the requested scopes a user chose to grant (consent narrows, never widens). */
export function narrow(granted: string[], chosen: string[]): string[] {
  return granted.filter((s) => chosen.includes(s));
}

export function formatScope(scope: ScopeRule & { v1?: boolean }): string {
  const query = scope.query?.length ? `?${new URLSearchParams(scope.query).toString()}` : '';
  if (scope.v1) {
    const v1 = Object.entries(V1_PERMISSIONS).find(([, p]) => p === scope.permissions)?.[0];
    if (v1) {
      return `${scope.context}/${scope.type}.${v1}${query}`;
    }
  }
  const ordered = [...V2_ORDER].filter((p) => scope.permissions.includes(p)).join('');
  return `${scope.context}/${scope.type}.${ordered}${query}`;
}

function sameQuery(a: [string, string][], b: [string, string][] | undefined): boolean {
  return !!b && new URLSearchParams(a).toString() === new URLSearchParams(b).toString();
}
