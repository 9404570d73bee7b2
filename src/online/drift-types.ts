/** One difference between the source's and the target's schema, and what to do about it. */
import type { SchemaObjectKind } from '../verify/types.js';

export type DriftAction = 'apply' | 'concurrently' | 'manual';

export interface DriftItem {
  kind: SchemaObjectKind;
  /** Pasteable name: `app.customers.loyalty`. */
  object: string;
  /** What differs, e.g. `missing on target (integer DEFAULT 7)`. */
  change: string;
  /** What to run on the target, in order. */
  statements: string[];
  action: DriftAction;
  /** Why it is left to the operator (manual only). */
  reason?: string;
  /** Order of application: schemas, sequences, tables, columns, constraints, views. */
  step: number;
  /** A table sync-schema creates: it is then published and its rows copied by the subscription. */
  newTable?: { schema: string; name: string };
}
