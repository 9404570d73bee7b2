/**
 * The application of the online tests: a bounded writer on the source, logged in as its own
 * role (never pgconvoy's superuser), that inserts, updates (rows with out-of-line TOASTed
 * values, mostly leaving that column alone) and deletes, one statement or a few per
 * transaction, and keeps its own model of what it saw commit. It stops when its session is
 * ended and the server refuses it a new one (cutover revoked its LOGIN).
 *
 * The model is the writer's log: every change it saw commit is in it. A change in flight
 * when the session died may or may not have committed; its keys are noted as uncertain
 * and settled afterwards by reading the source, which is the truth for what committed.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { openClient } from '../src/connect/open-client.js';
import type { ConnectionSpec } from '../src/connect/resolve.js';

export const ITEMS = 'public."Ferry Items"';
export const INITIAL_ITEMS = 2000;
export const INITIAL_ORDERS = 500;
export const INITIAL_NOKEY = 200;

export const md5 = (s: string): string => createHash('md5').update(s).digest('hex');

export interface Item {
  counter: number;
  note: string;
  big: string | null;
}
export interface Order {
  itemId: number;
  qty: number;
  tag: string;
}

type Pending =
  | { kind: 'item'; id: number }
  | { kind: 'item-note'; note: string }
  | { kind: 'order-tag'; tag: string }
  | { kind: 'orders-of'; itemId: number }
  | { kind: 'nokey'; v: string };

const CONNECTION_LOST = /terminat|Connection terminated|not queryable|ECONNRESET|closed/i;

export class AppWriter {
  readonly items = new Map<number, Item>();
  readonly orders = new Map<number, Order>();
  readonly nokey = new Map<string, number>();
  lastTicket = 0n;
  commits = 0;
  stopReason: string | undefined;
  private pending: Pending[] = [];
  private readonly uncertain: Pending[] = [];
  private stopRequested = false;
  private serial = 0;
  private client: pg.Client | undefined;
  done: Promise<void> = Promise.resolve();

  constructor(private readonly spec: ConnectionSpec) {
    for (let g = 1; g <= INITIAL_ITEMS; g++)
      this.items.set(g, { counter: 0, note: `n${g}`, big: g % 5 === 0 ? md5(String(g)).repeat(100) : null });
    for (let g = 1; g <= INITIAL_ORDERS; g++) this.orders.set(g, { itemId: g, qty: g % 7, tag: `i${g}` });
    for (let g = 1; g <= INITIAL_NOKEY; g++) this.nokey.set(`k${g}`, g);
  }

  start(maxMs: number): void {
    this.done = this.run(Date.now() + maxMs);
    this.done.catch(() => undefined); // awaited by the test; this only keeps it from counting as unhandled
  }

  stop(): Promise<void> {
    this.stopRequested = true;
    return this.done;
  }

  async waitForCommits(n: number, timeoutMs = 30_000): Promise<void> {
    const goal = this.commits + n;
    const deadline = Date.now() + timeoutMs;
    while (this.commits < goal && this.stopReason === undefined && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 10));
    if (this.commits < goal)
      throw new Error(`the writer made ${n} commits in time (${this.stopReason ?? 'running'})`);
  }

  private randomItem(): number | undefined {
    const max = INITIAL_ITEMS + this.serial + 10;
    for (let i = 0; i < 8; i++) {
      const id = 1 + Math.floor(Math.random() * max);
      if (this.items.has(id)) return id;
    }
    return undefined;
  }

  private async run(deadline: number): Promise<void> {
    this.client = await openClient(this.spec, { applicationName: 'app writer' });
    try {
      while (!this.stopRequested && Date.now() < deadline) {
        try {
          await this.step(this.client);
          this.pending = [];
          this.commits++;
        } catch (err) {
          if (!CONNECTION_LOST.test(String(err))) throw err;
          this.uncertain.push(...this.pending);
          this.pending = [];
          await this.client.end().catch(() => undefined);
          try {
            this.client = await openClient(this.spec, { applicationName: 'app writer' });
          } catch (again) {
            this.stopReason = String(again instanceof Error ? (again.cause ?? again.message) : again);
            this.client = undefined;
            return;
          }
        }
        await new Promise((r) => setTimeout(r, 1));
      }
      this.stopReason = 'stopped';
    } finally {
      await this.client?.end().catch(() => undefined);
    }
  }

  /** One transaction; the model changes only after it committed. `pending` names what it touches. */
  private async step(c: pg.Client): Promise<void> {
    const r = Math.random();
    const n = ++this.serial;
    if (r < 0.25) {
      const note = `w${n}`;
      const big = n % 4 === 0 ? md5(note).repeat(100) : null;
      this.pending = [{ kind: 'item-note', note }];
      const res = await c.query<{ id: string }>(
        `INSERT INTO ${ITEMS} (counter, note, big) VALUES (0, $1, $2) RETURNING id`,
        [note, big],
      );
      this.items.set(Number(res.rows[0]?.id), { counter: 0, note, big });
    } else if (r < 0.5) {
      const id = this.randomItem();
      if (id === undefined) return;
      this.pending = [{ kind: 'item', id }];
      await c.query(`UPDATE ${ITEMS} SET counter = counter + 1, note = note || '+' WHERE id = $1`, [id]);
      const it = this.items.get(id);
      if (it) this.items.set(id, { ...it, counter: it.counter + 1, note: `${it.note}+` });
    } else if (r < 0.58) {
      const id = this.randomItem();
      if (id === undefined) return;
      const big = md5(String(Math.random())).repeat(90);
      this.pending = [{ kind: 'item', id }];
      await c.query(`UPDATE ${ITEMS} SET big = $2 WHERE id = $1`, [id, big]);
      const it = this.items.get(id);
      if (it) this.items.set(id, { ...it, big });
    } else if (r < 0.68) {
      const id = this.randomItem();
      if (id === undefined) return;
      this.pending = [
        { kind: 'item', id },
        { kind: 'orders-of', itemId: id },
      ];
      await c.query(`DELETE FROM ${ITEMS} WHERE id = $1`, [id]);
      this.deleteItem(id);
    } else if (r < 0.83) {
      const itemId = this.randomItem();
      if (itemId === undefined) return;
      const tag = `o${n}`;
      this.pending = [{ kind: 'order-tag', tag }];
      const res = await c.query<{ id: number }>(
        'INSERT INTO shop.orders (item_id, qty, tag) VALUES ($1, $2, $3) RETURNING id',
        [itemId, n % 9, tag],
      );
      this.orders.set(Number(res.rows[0]?.id), { itemId, qty: n % 9, tag });
    } else if (r < 0.9) {
      const v = `x${n}`;
      this.pending = [{ kind: 'nokey', v }];
      await c.query('INSERT INTO public.nokey (v, n) VALUES ($1, $2)', [v, n]);
      this.nokey.set(v, n);
    } else if (r < 0.95) {
      const res = await c.query<{ v: string }>("SELECT pg_catalog.nextval('public.ticket_seq')::text AS v");
      this.lastTicket = BigInt(res.rows[0]?.v ?? '0');
    } else {
      await this.transaction(c, n);
    }
  }

  private async transaction(c: pg.Client, n: number): Promise<void> {
    const note = `t${n}`;
    const upd = this.randomItem();
    const del = this.randomItem();
    const v = `y${n}`;
    this.pending = [
      { kind: 'item-note', note },
      { kind: 'nokey', v },
    ];
    if (upd !== undefined) this.pending.push({ kind: 'item', id: upd });
    if (del !== undefined) this.pending.push({ kind: 'item', id: del }, { kind: 'orders-of', itemId: del });
    await c.query('BEGIN');
    const res = await c.query<{ id: string }>(
      `INSERT INTO ${ITEMS} (counter, note) VALUES (5, $1) RETURNING id`,
      [note],
    );
    if (upd !== undefined) await c.query(`UPDATE ${ITEMS} SET counter = counter + 10 WHERE id = $1`, [upd]);
    if (del !== undefined && del !== upd) await c.query(`DELETE FROM ${ITEMS} WHERE id = $1`, [del]);
    await c.query('INSERT INTO public.nokey (v, n) VALUES ($1, $2)', [v, n]);
    await c.query('COMMIT');
    this.items.set(Number(res.rows[0]?.id), { counter: 5, note, big: null });
    const it = upd !== undefined ? this.items.get(upd) : undefined;
    if (upd !== undefined && it) this.items.set(upd, { ...it, counter: it.counter + 10 });
    if (del !== undefined && del !== upd) this.deleteItem(del);
    this.nokey.set(v, n);
  }

  private deleteItem(id: number): void {
    this.items.delete(id);
    for (const [oid, o] of this.orders) if (o.itemId === id) this.orders.delete(oid);
  }

  /**
   * Settles the change that was in flight when the session died, from the source's rows.
   * Returns how many keys were uncertain.
   */
  async settle(source: pg.Client): Promise<number> {
    for (const p of this.uncertain) {
      if (p.kind === 'item' || p.kind === 'item-note') {
        const res = await source.query<{ id: string; counter: number; note: string; big: string | null }>(
          `SELECT id, counter, note, big FROM ${ITEMS} WHERE ${p.kind === 'item' ? 'id = $1' : 'note = $1'}`,
          [p.kind === 'item' ? p.id : p.note],
        );
        const row = res.rows[0];
        if (p.kind === 'item' && !row) this.items.delete(p.id);
        if (row) this.items.set(Number(row.id), { counter: row.counter, note: row.note, big: row.big });
      } else if (p.kind === 'orders-of') {
        const res = await source.query<{ id: number }>('SELECT id FROM shop.orders WHERE item_id = $1', [
          p.itemId,
        ]);
        const still = new Set(res.rows.map((x) => x.id));
        for (const [oid, o] of this.orders)
          if (o.itemId === p.itemId && !still.has(oid)) this.orders.delete(oid);
      } else if (p.kind === 'order-tag') {
        const res = await source.query<{ id: number; item_id: string; qty: number }>(
          'SELECT id, item_id, qty FROM shop.orders WHERE tag = $1',
          [p.tag],
        );
        const row = res.rows[0];
        if (row) this.orders.set(row.id, { itemId: Number(row.item_id), qty: row.qty, tag: p.tag });
      } else {
        const res = await source.query<{ n: number }>('SELECT n FROM public.nokey WHERE v = $1', [p.v]);
        const row = res.rows[0];
        if (row) this.nokey.set(p.v, row.n);
      }
    }
    return this.uncertain.length;
  }
}
