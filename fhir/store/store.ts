/**
 * The resource store: the FHIR interactions over the resource tables. Each write (current
 * row, history row, search columns and its AuditEvent) is one transaction; a caller that
 * already holds a transaction (a transaction Bundle) passes it in and everything it does
 * commits or rolls back together. The server owns `id` on create, `meta.versionId` and
 * `meta.lastUpdated`.
 */
import { randomUUID } from 'node:crypto';
import type { Resource } from '@medplum/fhirtypes';
import type { Operation } from 'rfc6902';
import { applyJsonPatch } from './json-patch.js';
import type { AccessContext } from '../access.js';
import type { AuditLog, AuditRecord, Interaction } from '../audit/audit-log.js';
import type { Database, Queryable } from '../db/database.js';
import { isSupportedType } from '../definitions.js';
import { permit } from '../access.js';
import { badRequest, FhirError, gone, notFound, payloadTooLarge, preconditionFailed, toFhirError } from '../errors.js';
import { AccessGuard } from './guard.js';
import { typeCatalog } from '../search/catalog.js';
import type { TypeCatalog } from '../search/catalog.js';
import { executeSearch } from '../search/execute.js';
import type { SearchResult } from '../search/execute.js';
import { parseSearch } from '../search/parse.js';
import type { SearchRequest } from '../search/parse.js';
import { isValidId, validateIncoming } from '../validate.js';
import { compartmentsOf, extractIndexValues } from './index-values.js';
import type { ColumnValues } from './index-values.js';
import { readHistory } from './history.js';
import type { HistoryPage } from './history.js';
import { indexResource, writeVersion } from './rows.js';

export interface StoredResource {
  type: string;
  id: string;
  version: number;
  lastUpdated: string;
  /** The resource JSON as served. */
  content: string;
  /** Binary bytes (Binary only). */
  data?: Buffer;
}

export type WriteOutcome = 'created' | 'updated' | 'existing' | 'deleted' | 'unchanged';

export interface WriteResult {
  outcome: WriteOutcome;
  stored: StoredResource;
}

export interface StoreOptions {
  fhirBaseUrl: string;
  defaultPageSize: number;
  maxPageSize: number;
  maxBinaryBytes: number;
}

export type { HistoryEntry, HistoryPage } from './history.js';

export class ResourceStore {
  private readonly guard: AccessGuard;

  constructor(
    readonly db: Database,
    readonly audit: AuditLog,
    readonly options: StoreOptions
  ) {
    this.guard = new AccessGuard(options.fhirBaseUrl);
  }

  /** Runs `fn` in one database transaction (used by transaction Bundles). */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    return this.db.transaction(fn);
  }

  // ---- writes ---------------------------------------------------------------------------

  async create(ctx: AccessContext, input: unknown, type: string, options: { ifNoneExist?: string; tx?: Queryable; id?: string } = {}): Promise<WriteResult> {
    return this.auditedWrite(ctx, 'create', type, undefined, options.tx, async (tx) => {
      permit(ctx, type, 'c');
      const resource = validateIncoming(input, type);
      if (options.ifNoneExist !== undefined) {
        const existing = await this.findConditional(tx, type, options.ifNoneExist, ctx);
        if (existing) {
          return { outcome: 'existing', stored: existing };
        }
      }
      const id = options.id ?? randomUUID();
      return this.writeNew(tx, ctx, 'create', { ...resource, id }, 1);
    });
  }

  /** Update, or create with the client's id when the resource does not exist yet. */
  async update(ctx: AccessContext, input: unknown, type: string, id: string, options: { ifMatch?: number; tx?: Queryable } = {}): Promise<WriteResult> {
    return this.auditedWrite(ctx, 'update', type, id, options.tx, async (tx) => {
      assertId(id);
      const resource = validateIncoming(input, type);
      if (resource.id !== id) {
        throw badRequest(`The resource id (${resource.id ?? 'missing'}) must match the id in the URL (${id})`, [`${type}.id`]);
      }
      const current = await this.lockCurrent(tx, type, id);
      if (current) {
        await this.guard.assertVisible(tx, ctx, type, { id, ...current }, 'u');
      } else {
        permit(ctx, type, 'u');
      }
      if (options.ifMatch !== undefined && options.ifMatch !== (current?.deleted ? -1 : current?.version)) {
        throw preconditionFailed(`Version ${options.ifMatch} is not the current version of ${type}/${id}`);
      }
      const version = (current?.version ?? 0) + 1;
      const result = await this.writeNew(tx, ctx, 'update', resource, version);
      return { ...result, outcome: current && !current.deleted ? 'updated' : 'created' };
    });
  }

  async patch(ctx: AccessContext, type: string, id: string, operations: unknown, options: { ifMatch?: number; tx?: Queryable } = {}): Promise<WriteResult> {
    return this.auditedWrite(ctx, 'patch', type, id, options.tx, async (tx) => {
      assertId(id);
      if (!Array.isArray(operations) || operations.some((op) => !op || typeof op !== 'object' || typeof op.op !== 'string' || typeof op.path !== 'string')) {
        throw badRequest('A JSON Patch body must be an array of operations with "op" and "path"');
      }
      const current = await this.lockCurrent(tx, type, id);
      if (!current) {
        throw notFound(`${type}/${id} does not exist`);
      }
      await this.guard.assertVisible(tx, ctx, type, { id, ...current }, 'u');
      if (current.deleted) {
        throw gone(`${type}/${id} has been deleted`);
      }
      if (options.ifMatch !== undefined && options.ifMatch !== current.version) {
        throw preconditionFailed(`Version ${options.ifMatch} is not the current version of ${type}/${id}`);
      }
      const resource = JSON.parse(current.content) as Resource;
      applyJsonPatch(resource, operations as Operation[]);
      if (resource.resourceType !== type || resource.id !== id) {
        throw badRequest('A patch may not change resourceType or id');
      }
      const result = await this.writeNew(tx, ctx, 'patch', validateIncoming(resource, type), current.version + 1, current.data);
      // A patch changes an existing resource: 200, not writeNew's 201.
      return { ...result, outcome: 'updated' };
    });
  }

  async delete(ctx: AccessContext, type: string, id: string, options: { tx?: Queryable } = {}): Promise<WriteResult> {
    return this.auditedWrite(ctx, 'delete', type, id, options.tx, async (tx) => {
      assertId(id);
      const current = await this.lockCurrent(tx, type, id);
      if (!current) {
        throw notFound(`${type}/${id} does not exist`);
      }
      await this.guard.assertVisible(tx, ctx, type, { id, ...current }, 'd');
      const stored: StoredResource = { type, id, version: current.version, lastUpdated: current.lastUpdated, content: '' };
      if (current.deleted) {
        return { outcome: 'unchanged', stored };
      }
      const lastUpdated = new Date().toISOString();
      const previous = JSON.parse(current.content) as Resource;
      const catalog = typeCatalog(type);
      await writeVersion(
        tx,
        catalog,
        { id, version: current.version + 1, lastUpdated, deleted: true, content: '' },
        { values: this.keptOnDelete(catalog, previous), compartments: current.compartments }
      );
      await this.audit.write(tx, ctx, { interaction: 'delete', target: `${type}/${id}`, patients: this.patientsOf(type, previous), outcome: '0' });
      return { outcome: 'deleted', stored: { ...stored, version: current.version + 1, lastUpdated } };
    });
  }

  // ---- reads ----------------------------------------------------------------------------

  async read(ctx: AccessContext, type: string, id: string, options: { tx?: Queryable } = {}): Promise<StoredResource> {
    return this.auditedRead(ctx, 'read', `${type}/${id}`, async () => {
      assertType(type);
      if (!isValidId(id)) {
        throw notFound(`${type}/${id} does not exist`);
      }
      const rows = await (options.tx ?? this.db).query(
        `SELECT version, last_updated, deleted, content, compartments, t__security${type === 'Binary' ? ', data' : ''} FROM "${type}" WHERE id = $1`,
        [id]
      );
      const row = rows[0];
      if (!row) {
        throw notFound(`${type}/${id} does not exist`);
      }
      await this.guard.assertVisible(options.tx ?? this.db, ctx, type, { id, content: row.content, compartments: row.compartments ?? [], security: row.t__security });
      if (row.deleted) {
        throw gone(`${type}/${id} has been deleted`);
      }
      return {
        stored: { type, id, version: row.version, lastUpdated: isoInstant(row.last_updated), content: row.content, data: toBuffer(row.data) },
        patients: row.compartments ?? [],
      };
    });
  }

  async vread(ctx: AccessContext, type: string, id: string, version: string, options: { tx?: Queryable } = {}): Promise<StoredResource> {
    // Inside a transaction Bundle, reads use its connection: PGlite has only one, so a
    // query outside the open transaction would wait for it forever.
    const db = options.tx ?? this.db;
    return this.auditedRead(ctx, 'vread', `${type}/${id}`, async () => {
      assertType(type);
      if (!isValidId(id) || !/^\d{1,9}$/.test(version)) {
        throw notFound(`${type}/${id}/_history/${version} does not exist`);
      }
      const rows = await db.query(
        `SELECT h.version, h.last_updated, h.deleted, h.content, r.content AS current_content, r.compartments, r.t__security${type === 'Binary' ? ', h.data' : ''} ` +
          `FROM "${type}_History" h JOIN "${type}" r ON r.id = h.id WHERE h.id = $1 AND h.version = $2`,
        [id, Number(version)]
      );
      const row = rows[0];
      if (!row) {
        throw notFound(`${type}/${id}/_history/${version} does not exist`);
      }
      await this.guard.assertVisible(db, ctx, type, { id, content: row.current_content, compartments: row.compartments ?? [], security: row.t__security });
      if (row.deleted) {
        throw gone(`${type}/${id} was deleted in version ${version}`);
      }
      const stored = { type, id, version: row.version, lastUpdated: isoInstant(row.last_updated), content: row.content, data: toBuffer(row.data) };
      return { stored, patients: this.patientsOf(type, JSON.parse(row.content)) };
    });
  }

  /** Instance history (`id` given) or type history, newest first. */
  async history(ctx: AccessContext, type: string, id: string | undefined, query: { count?: number; since?: string; before?: string }, options: { tx?: Queryable } = {}): Promise<HistoryPage> {
    const db = options.tx ?? this.db;
    const interaction = id ? 'history-instance' : 'history-type';
    return this.auditedRead(ctx, interaction, id ? `${type}/${id}` : type, async () => {
      assertType(type);
      const count = Math.min(query.count ?? this.options.defaultPageSize, this.options.maxPageSize);
      const page = await readHistory(db, this.guard, ctx, type, id, { ...query, count });
      const newest = page.entries[0];
      const patients = id && newest && !newest.deleted ? this.patientsOf(type, JSON.parse(newest.content)) : [];
      return { stored: page, patients };
    });
  }

  parseSearch(type: string, pairs: [string, string][], lenient: boolean): SearchRequest {
    assertType(type);
    return parseSearch(type, pairs, {
      defaultCount: this.options.defaultPageSize,
      maxCount: this.options.maxPageSize,
      lenient,
      fhirBaseUrl: this.options.fhirBaseUrl,
    });
  }

  async search(ctx: AccessContext, request: SearchRequest, options: { tx?: Queryable } = {}): Promise<SearchResult> {
    return this.auditedRead(ctx, 'search-type', request.type, async () => {
      permit(ctx, request.type, 's');
      const result = await executeSearch(options.tx ?? this.db, request, this.guard.searchScope(ctx));
      return { stored: result, patients: [] };
    });
  }

  // ---- internals ------------------------------------------------------------------------

  private async writeNew(tx: Queryable, ctx: AccessContext, interaction: Interaction, resource: Resource, version: number, keepData?: Buffer): Promise<WriteResult> {
    const type = resource.resourceType;
    const lastUpdated = new Date().toISOString();
    const stamped = { ...resource, meta: { ...resource.meta, versionId: String(version), lastUpdated } } as Resource;
    let data: Buffer | undefined;
    if (type === 'Binary') {
      const binary = stamped as Resource & { data?: string };
      data = binary.data !== undefined ? Buffer.from(binary.data, 'base64') : keepData;
      if (data && data.length > this.options.maxBinaryBytes) {
        throw payloadTooLarge(`Binary content is larger than ${this.options.maxBinaryBytes} bytes`);
      }
      delete binary.data;
    }
    const content = JSON.stringify(stamped);
    const catalog = typeCatalog(type);
    const index = indexResource(catalog, stamped, this.options.fhirBaseUrl);
    if (type === 'Binary') {
      index.compartments = await this.binaryCompartments(tx, stamped);
    }
    this.guard.assertWritable(ctx, stamped, index.compartments, interaction === 'create' ? 'c' : 'u');
    await writeVersion(tx, catalog, { id: resource.id!, version, lastUpdated, deleted: false, content, data }, index);
    await this.audit.write(tx, ctx, { interaction, target: `${type}/${resource.id}`, patients: [...index.compartments], outcome: '0' });
    return {
      outcome: 'created',
      stored: { type, id: resource.id!, version, lastUpdated, content, data },
    };
  }

  /** Locks the resource's row for this transaction (it may not exist yet) and returns it. */
  private async lockCurrent(tx: Queryable, type: string, id: string) {
    assertType(type);
    // Serializes writers of one resource, including two creates of the same client id.
    await tx.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`${type}/${id}`]);
    const rows = await tx.query(
      `SELECT version, last_updated, deleted, content, compartments, t__security${type === 'Binary' ? ', data' : ''} FROM "${type}" WHERE id = $1 FOR UPDATE`,
      [id]
    );
    const row = rows[0];
    return row
      ? {
          version: row.version as number,
          lastUpdated: isoInstant(row.last_updated),
          deleted: row.deleted as boolean,
          content: row.content as string,
          compartments: (row.compartments ?? []) as string[],
          security: row.t__security as string[] | null,
          data: toBuffer(row.data),
        }
      : undefined;
  }

  /** The one resource matching a conditional-create query, if any (412 when several match). */
  async findConditional(tx: Queryable, type: string, query: string, ctx: AccessContext): Promise<StoredResource | undefined> {
    const pairs = [...new URLSearchParams(query.replace(/^.*\?/, ''))] as [string, string][];
    if (!pairs.length) {
      throw badRequest('If-None-Exist must carry search parameters');
    }
    // Two identical conditional creates must not both create: serialize them on the query.
    await tx.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`${type}?${query}`]);
    const request = this.parseSearch(type, pairs, false);
    request.count = 2;
    const result = await executeSearch(tx, request, this.guard.searchScope(ctx));
    if (result.matches.length > 1) {
      throw preconditionFailed(`If-None-Exist matched more than one ${type}`);
    }
    const match = result.matches[0];
    if (!match) {
      return undefined;
    }
    const meta = (JSON.parse(match.content) as Resource).meta;
    return { type, id: match.id, version: Number(meta?.versionId ?? 1), lastUpdated: meta?.lastUpdated ?? '', content: match.content };
  }

  /**
   * A Binary belongs where its security context does: a Patient, or the compartments of the
   * resource it is attached to (so an attachment is readable exactly by the message's readers).
   */
  private async binaryCompartments(tx: Queryable, binary: Resource): Promise<string[]> {
    const reference = (binary as { securityContext?: { reference?: string } }).securityContext?.reference;
    const [type, id] = reference?.replace(`${this.options.fhirBaseUrl}/`, '').split('/') ?? [];
    if (!type || !id || !isSupportedType(type) || !isValidId(id)) {
      return [];
    }
    if (type === 'Patient') {
      return [`Patient/${id}`];
    }
    const rows = await tx.query(`SELECT compartments FROM "${type}" WHERE id = $1`, [id]);
    return rows[0]?.compartments ?? [];
  }

  /**
   * The search values a deleted row keeps: its security labels, like its compartments, since
   * who may see its earlier versions (a confidential message: not a proxy) still depends on them.
   */
  private keptOnDelete(catalog: TypeCatalog, previous: Resource): ColumnValues {
    const column = catalog.params.get('_security')?.column;
    if (!column) {
      return new Map();
    }
    const values = extractIndexValues(catalog, previous, { fhirBaseUrl: this.options.fhirBaseUrl });
    return new Map([[column, values.get(column) ?? null]]);
  }

  private patientsOf(type: string, resource: Resource): string[] {
    const catalog = typeCatalog(type);
    if (!catalog.compartmentParams.length && type !== 'Patient') {
      return [];
    }
    return compartmentsOf(catalog, resource, extractIndexValues(catalog, resource, { fhirBaseUrl: this.options.fhirBaseUrl }));
  }

  private async auditedWrite(
    ctx: AccessContext,
    interaction: Interaction,
    type: string,
    id: string | undefined,
    tx: Queryable | undefined,
    fn: (tx: Queryable) => Promise<WriteResult>
  ): Promise<WriteResult> {
    try {
      assertType(type);
      return tx ? await fn(tx) : await this.db.transaction(fn);
    } catch (err) {
      this.auditFailure(ctx, interaction, id ? `${type}/${id}` : type, err);
      throw err;
    }
  }

  private async auditedRead<T>(ctx: AccessContext, interaction: Interaction, target: string, fn: () => Promise<{ stored: T; patients: string[] }>): Promise<T> {
    try {
      const { stored, patients } = await fn();
      this.audit.enqueue(ctx, { interaction, target, patients, outcome: '0' });
      return stored;
    } catch (err) {
      this.auditFailure(ctx, interaction, target, err);
      throw err;
    }
  }

  private auditFailure(ctx: AccessContext, interaction: Interaction, target: string, err: unknown): void {
    const error = toFhirError(err);
    const record: AuditRecord = {
      interaction,
      target: isSupportedType(target.split('/')[0]) ? target : undefined,
      outcome: error.status >= 500 ? '8' : '4',
      detail: `HTTP ${error.status}`,
    };
    this.audit.enqueue(ctx, record);
  }
}

function assertType(type: string): void {
  if (!isSupportedType(type)) {
    throw notFound(`Resource type ${type} is not supported by this server`);
  }
}

function assertId(id: string): void {
  if (!isValidId(id)) {
    throw badRequest('The resource id must be 1-64 letters, digits, "-" or "."');
  }
}

function isoInstant(value: string): string {
  return new Date(value).toISOString();
}

function toBuffer(value: unknown): Buffer | undefined {
  if (value === null || value === undefined) {
    return undefined;
  }
  return Buffer.isBuffer(value) ? value : Buffer.from(value as Uint8Array);
}

export { FhirError };
