/**
 * Steps of a run other than table copies (schema applied, a table's indexes built, sequences
 * set, ...). A step's "done" row is written in the same transaction as the step's own work
 * wherever the work is transactional, so a killed run never counts half a step as done.
 * Its finished_at is the clock when the mark is written (after the step's work, just before
 * its COMMIT), not the transaction's start: the ledger shows when each step ended.
 */
import type pg from 'pg';
import { qualifiedName, quoteLiteral } from '../util/sql.js';

export class Steps {
  constructor(private readonly schema: string) {}

  private get table(): string {
    return qualifiedName(this.schema, 'steps');
  }

  /** SQL that marks a step done; run it inside the step's own transaction. */
  markDoneSql(name: string, detail: unknown = null): { text: string; values: unknown[] } {
    return {
      text: `INSERT INTO ${this.table} (name, state, detail, finished_at) VALUES ($1, 'done', $2, pg_catalog.clock_timestamp())
             ON CONFLICT (name) DO UPDATE SET state = 'done', detail = EXCLUDED.detail, finished_at = EXCLUDED.finished_at`,
      values: [name, JSON.stringify(detail)],
    };
  }

  /** The same, for scripts that cannot bind parameters (psql): values as quoted literals. */
  markDoneScript(name: string, detail: unknown = null): string {
    return `INSERT INTO ${this.table} (name, state, detail, finished_at) VALUES (${quoteLiteral(name)}, 'done', ${quoteLiteral(JSON.stringify(detail))}::jsonb, pg_catalog.clock_timestamp())
ON CONFLICT (name) DO UPDATE SET state = 'done', detail = EXCLUDED.detail, finished_at = EXCLUDED.finished_at;`;
  }

  async markDone(client: pg.Client, name: string, detail: unknown = null): Promise<void> {
    const q = this.markDoneSql(name, detail);
    await client.query(q.text, q.values);
  }

  /** The detail recorded with a step, or undefined when the step has no row. */
  async detail<T>(client: pg.Client, name: string): Promise<T | undefined> {
    const res = await client.query<{ detail: T }>(`SELECT detail FROM ${this.table} WHERE name = $1`, [name]);
    return res.rows[0]?.detail;
  }

  async done(client: pg.Client): Promise<Set<string>> {
    const res = await client.query<{ name: string }>(`SELECT name FROM ${this.table} WHERE state = 'done'`);
    return new Set(res.rows.map((r) => r.name));
  }
}
