/**
 * A writer for the freeze tests: inserts (writer, n) rows into public.events, either
 * connecting for every insert (every 10 ms) or holding one connection, and remembers what it
 * saw commit and every attempt that failed, with its SQLSTATE.
 */
import pg from 'pg';

/** public.events for the writers, with `seedRows` rows already in it, writable by the role `app`. */
export const eventsFixture = (seedRows: number): string => `
CREATE TABLE public.events (id bigserial PRIMARY KEY, writer text NOT NULL, n integer NOT NULL, UNIQUE (writer, n));
INSERT INTO public.events (writer, n) SELECT 'seed', g FROM generate_series(1, ${seedRows}) g;
GRANT SELECT, INSERT ON public.events TO app;
GRANT USAGE ON SEQUENCE public.events_id_seq TO app;`;

/**
 * How a write attempted on a frozen source may end: read-only, no CONNECT, ended by the
 * server, or a lost connection. Never a success.
 */
export const REFUSED = /^(25006|42501|57P01|55000)$|terminat|Connection|ECONNRESET|closed|read-only/i;

export interface Attempt {
  at: number;
  ok: boolean;
  /** SQLSTATE or the client's error text. */
  error?: string;
}

/** Inserts (writer, n) rows until stopped; remembers what it saw commit and every failure. */
// A connection attempt that the server ends halfway (the freeze terminates sessions) must not
// hang the writer: bound every connect and query.
const LIMITS = { connectionTimeoutMillis: 5000, query_timeout: 10_000 };

export class Writer {
  readonly committed: number[] = [];
  readonly attempts: Attempt[] = [];
  private stopped = false;
  private done: Promise<void> = Promise.resolve();
  private n = 0;

  constructor(
    readonly name: string,
    private readonly config: pg.ClientConfig,
    private readonly mode: 'short' | 'long',
  ) {}

  start(): void {
    this.done = this.mode === 'short' ? this.short() : this.long();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }

  /** `started`: when the attempt began; one that began before a freeze may end after it. */
  private note(started: number, ok: boolean, err?: unknown): void {
    const e = err as { code?: string; message?: string } | undefined;
    this.attempts.push({
      at: started,
      ok,
      ...(ok ? {} : { error: e?.code ?? e?.message ?? String(err) }),
    });
  }

  private async insert(client: pg.Client): Promise<void> {
    const n = ++this.n;
    await client.query('INSERT INTO public.events (writer, n) VALUES ($1, $2)', [this.name, n]);
    this.committed.push(n);
  }

  private async short(): Promise<void> {
    while (!this.stopped) {
      const client = new pg.Client({ ...this.config, ...LIMITS });
      client.on('error', () => undefined);
      const started = Date.now();
      try {
        await client.connect();
        await this.insert(client);
        this.note(started, true);
      } catch (err) {
        this.note(started, false, err);
      } finally {
        await client.end().catch(() => undefined);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  private async long(): Promise<void> {
    let client: pg.Client | undefined;
    while (!this.stopped) {
      const started = Date.now();
      try {
        if (!client) {
          const fresh = new pg.Client({ ...this.config, ...LIMITS });
          fresh.on('error', () => undefined);
          await fresh.connect();
          client = fresh; // only a connected client is kept: a refused one is tried anew
        }
        await this.insert(client);
        this.note(started, true);
      } catch (err) {
        this.note(started, false, err);
        if (!(err as { code?: string }).code || (err as { code?: string }).code === '57P01') {
          await client?.end().catch(() => undefined);
          client = undefined;
        }
      }
      await new Promise((r) => setTimeout(r, 2));
    }
    await client?.end().catch(() => undefined);
  }
}
