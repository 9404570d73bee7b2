/**
 * The precheck row on the two databases' encodings and collations (schema/database-create.ts
 * reads and compares them): a difference changes index order and uniqueness on the target.
 */
import type pg from 'pg';
import { collationMismatch, describeCollation, readDatabaseDefinition } from '../schema/database-create.js';
import { row, type PrecheckRow } from './precheck-rows.js';

export async function checkCollation(
  source: pg.Client,
  sourceMajor: number,
  target: pg.Client,
  targetMajor: number,
): Promise<PrecheckRow> {
  const [s, t] = await Promise.all([
    readDatabaseDefinition(source, sourceMajor),
    readDatabaseDefinition(target, targetMajor),
  ]);
  const base = { id: 'target.collation', side: 'target' as const, check: 'encoding and collation' };
  const mismatch = collationMismatch(s, t);
  if (!mismatch) return row({ ...base, status: 'pass', detail: `${describeCollation(t)}, as the source` });
  return row({ ...base, status: 'warn', detail: mismatch.message, hint: mismatch.hint });
}
