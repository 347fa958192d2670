/**
 * The SQL that writes one resource version: the current row (with its search columns) and
 * the history row, in a single statement so a write costs one round trip. Statements are
 * built once per type and reused.
 */
import type { Resource } from '@medplum/fhirtypes';
import type { Queryable } from '../db/database.js';
import type { TypeCatalog } from '../search/catalog.js';
import { sortedIndexesOf } from '../search/sorted-indexes.js';
import { compartmentsOf, extractIndexValues, indexColumns } from './index-values.js';
import type { ColumnValues } from './index-values.js';

export interface VersionRow {
  id: string;
  version: number;
  lastUpdated: string;
  deleted: boolean;
  /** The resource JSON as served (empty for a deletion). */
  content: string;
  /** Binary bytes, stored beside the JSON. */
  data?: Buffer | null;
}

interface WriteStatement {
  sql: string;
  columns: string[];
}

const statements = new Map<string, WriteStatement>();

function writeStatement(catalog: TypeCatalog): WriteStatement {
  let statement = statements.get(catalog.type);
  if (statement) {
    return statement;
  }
  const binary = catalog.type === 'Binary';
  const fixed = ['id', 'version', 'last_updated', 'deleted', 'content', 'compartments', ...(binary ? ['data'] : [])];
  const columns = [...fixed, ...indexColumns(catalog)];
  const placeholders = columns.map((_, i) => `$${i + 1}`);
  const updates = columns.filter((c) => c !== 'id').map((c) => `${c} = EXCLUDED.${c}`);
  const historyColumns = ['id', 'version', 'last_updated', 'deleted', 'content', ...(binary ? ['data'] : [])];
  const historyValues = historyColumns.map((c) => `$${columns.indexOf(c) + 1}`);
  const param = (column: string) => `$${columns.indexOf(column) + 1}`;
  // The sorted index tables follow the row: old entries out, current references in.
  const sortedIndexes = sortedIndexesOf(catalog.type).map((index, i) => {
    const refs = param(catalog.params.get(index.param)!.column);
    const sort = param(`${catalog.params.get(index.sort)!.column}_lo`);
    return (
      `, sorted_del_${i} AS (DELETE FROM ${index.table} WHERE id = $1)` +
      `, sorted_ins_${i} AS (INSERT INTO ${index.table} (target, sort, id) ` +
      `SELECT t, ${sort}::timestamptz, $1 FROM unnest(${refs}::text[]) AS t WHERE NOT ${param('deleted')}::boolean)`
    );
  });
  const sql =
    `WITH current_row AS (INSERT INTO ${catalog.table} (${columns.join(', ')}) VALUES (${placeholders.join(', ')}) ` +
    `ON CONFLICT (id) DO UPDATE SET ${updates.join(', ')} RETURNING id)${sortedIndexes.join('')} ` +
    `INSERT INTO ${catalog.historyTable} (${historyColumns.join(', ')}) ` +
    `SELECT ${historyValues.join(', ')} FROM current_row`;
  statement = { sql, columns };
  statements.set(catalog.type, statement);
  return statement;
}

export interface RowIndex {
  /** Search column values (for a deletion only the security labels; deleted rows never match a search). */
  values: ColumnValues;
  /** Patient compartments; kept on deleted rows so access to them is still decided right. */
  compartments: readonly string[];
}

/** Extracts a resource's search values and compartments once, for a write. */
export function indexResource(catalog: TypeCatalog, resource: Resource, fhirBaseUrl: string): RowIndex {
  const values = extractIndexValues(catalog, resource, { fhirBaseUrl });
  return { values, compartments: compartmentsOf(catalog, resource, values) };
}

/** Writes a version: the current row (with search columns) and the history row. */
export async function writeVersion(tx: Queryable, catalog: TypeCatalog, row: VersionRow, index: RowIndex): Promise<void> {
  const statement = writeStatement(catalog);
  const fixed: Record<string, unknown> = {
    id: row.id,
    version: row.version,
    last_updated: row.lastUpdated,
    deleted: row.deleted,
    content: row.content,
    compartments: index.compartments.length ? index.compartments : null,
    data: row.data ?? null,
  };
  const params = statement.columns.map((c) => (c in fixed ? fixed[c] : (index.values.get(c) ?? null)));
  await tx.query(statement.sql, params);
}
