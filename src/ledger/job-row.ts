/**
 * The trust boundary between the target's ledger and the source: a job row read from
 * `<ledger>.jobs` is checked here before anything uses it. A chunk's column type and block
 * numbers are written into the SQL that reads the source (COPY cannot bind parameters), so
 * whoever can write the target's ledger could otherwise run SQL as the source role.
 * Column names and values are quoted where they are used; the type name is not (it is SQL
 * syntax), so it must be a plain type name as `format_type()` prints it, nothing more.
 */
import { z } from 'zod';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import type { Chunk } from '../plan/chunk.js';

/** A lower-case SQL identifier, or a double-quoted one ("" inside for a quote). */
const IDENT = String.raw`(?:[a-z_][a-z0-9_$]*|"(?:[^"\u0000]|"")+")`;
/** format_type()'s names that are several words; no other type name may contain a space. */
const MULTI_WORD = [
  'bit varying',
  'character varying',
  'double precision',
  'time with time zone',
  'time without time zone',
  'timestamp with time zone',
  'timestamp without time zone',
];
/** `integer`, `public.my_enum`, `"My Schema"."My Type"`, `character varying`, `text[]`. */
const TYPE_NAME = new RegExp(`^(?:${MULTI_WORD.join('|')}|${IDENT}(?:\\.${IDENT})?)(?:\\[\\])?$`);

export function isPlainTypeName(s: string): boolean {
  return TYPE_NAME.test(s);
}

const typeName = z.string().refine(isPlainTypeName, { message: 'not a plain type name' });
const blockNumber = z.number().int().nonnegative().max(0xffffffff);

export const chunkSchema: z.ZodType<Chunk> = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('whole') }).strict(),
  z
    .object({
      kind: z.literal('key-range'),
      column: z.string().min(1),
      columnType: typeName,
      low: z.string().optional(),
      high: z.string().optional(),
      highInclusive: z.boolean().optional(),
      includeNulls: z.boolean(),
    })
    .strict(),
  z
    .object({ kind: z.literal('block-range'), fromBlock: blockNumber, toBlock: blockNumber.optional() })
    .strict(),
  z
    .object({
      kind: z.literal('value'),
      column: z.string().min(1),
      columnType: typeName,
      value: z.string().nullable(),
    })
    .strict(),
  z.object({ kind: z.literal('partition'), schema: z.string().min(1), name: z.string().min(1) }).strict(),
]);

/** bigint columns arrive as strings. */
const bigintText = z.string().regex(/^\d+$/);

/** One row of `<ledger>.jobs` as node-postgres returns it. */
export const rawJobSchema = z.object({
  id: bigintText,
  seq: z.number().int(),
  table_schema: z.string().min(1),
  table_name: z.string().min(1),
  chunk: chunkSchema,
  chunk_label: z.string(),
  chunk_count: z.number().int().positive(),
  estimated_bytes: bigintText,
  copy_format: z.enum(['binary', 'text']),
  state: z.enum(['pending', 'done', 'failed']),
  attempts: z.number().int().nonnegative(),
  done_by: z.string().nullable(),
  rows: bigintText.nullable(),
  bytes: bigintText.nullable(),
  seconds: z.number().nullable(),
  error: z.string().nullable(),
});

export type RawJob = z.infer<typeof rawJobSchema>;

/** The row, checked; a row that fails the check stops the command before the source sees it. */
export function parseJobRow(row: unknown, table: string): RawJob {
  const parsed = rawJobSchema.safeParse(row);
  if (parsed.success) return parsed.data;
  const id = (row as { id?: unknown } | null)?.id;
  const problems = parsed.error.issues.map((i) => `${i.path.join('.') || 'row'}: ${i.message}`).join('; ');
  throw new PgconvoyError(
    `job ${typeof id === 'string' || typeof id === 'number' ? id : '?'} in ${table} on the target is not valid: ${problems}`,
    {
      code: 'LEDGER_INVALID',
      exitCode: EXIT.target,
      hint: `the ledger was changed by something other than pgconvoy; nothing of this job was read from the source. Check who may write ${table}, then delete the row (or drop the ledger schema and clone again)`,
      details: { job: id, problems: parsed.error.issues },
    },
  );
}
