/**
 * `--relay`: the change stream the apply methods are measured on, pgbench-like: single-row
 * INSERT, UPDATE and DELETE, one per source transaction, spread over several tables with
 * primary keys, plus a heartbeat row that tells when the target has caught up.
 *
 * The changes are made by a procedure on the source (`bench.churn(n)`) that COMMITs after
 * every statement: n separate transactions from one CALL, so the generator costs no client
 * round trip per transaction and is never what limits the rate. The paced writer calls it
 * every 10 ms with what is due to hold a fixed rate of transactions per second.
 */
import pg from 'pg';
import { sleep } from '../src/util/wait.js';

export interface WorkloadShape {
  tables: number;
  rowsPerTable: number;
}

/** The tables, their seed rows and the churn procedure (PostgreSQL 13+). */
export function workloadSql(shape: WorkloadShape): string {
  const lines = [
    'CREATE SCHEMA bench;',
    'CREATE TABLE bench.heartbeat (id integer PRIMARY KEY, at timestamptz NOT NULL);',
    'INSERT INTO bench.heartbeat VALUES (1, pg_catalog.clock_timestamp());',
  ];
  const branches: string[] = [];
  for (let t = 1; t <= shape.tables; t++) {
    lines.push(
      `CREATE TABLE bench.t${t} (id bigint PRIMARY KEY, account integer NOT NULL, balance bigint NOT NULL, note text, at timestamptz NOT NULL DEFAULT now());`,
      `INSERT INTO bench.t${t} SELECT g, g % 1000, 0, md5(g::text), now() FROM generate_series(1, ${shape.rowsPerTable}) g;`,
      `CREATE SEQUENCE bench.t${t}_next START ${shape.rowsPerTable + 1};`,
    );
    branches.push(`${t === 1 ? 'IF' : 'ELSIF'} t = ${t} THEN
      IF r < 0.25 THEN
        INSERT INTO bench.t${t} (id, account, balance, note) VALUES (nextval('bench.t${t}_next'), k % 1000, 0, md5(k::text));
      ELSIF r < 0.75 THEN
        UPDATE bench.t${t} SET balance = balance + 1, at = now() WHERE id = k;
      ELSE
        DELETE FROM bench.t${t} WHERE id = k;
      END IF;`);
  }
  // Updates and deletes pick a seed key; one whose row was deleted changes nothing (and is
  // not counted: `changes` sums ROW_COUNT).
  lines.push(`CREATE PROCEDURE bench.churn(n integer, INOUT changes bigint DEFAULT 0) LANGUAGE plpgsql AS $$
DECLARE
  r float8; t integer; k bigint; c bigint;
BEGIN
  FOR i IN 1..n LOOP
    r := random();
    t := 1 + floor(random() * ${shape.tables})::integer;
    k := 1 + floor(random() * ${shape.rowsPerTable})::bigint;
    ${branches.join('\n    ')}
    END IF;
    GET DIAGNOSTICS c = ROW_COUNT;
    changes := changes + c;
    COMMIT;
  END LOOP;
END $$;`);
  return lines.join('\n');
}

/** `n` single-change transactions over `connections` sessions at once, as fast as they go. */
export async function writeBacklog(config: pg.ClientConfig, n: number, connections: number): Promise<number> {
  const per = Math.ceil(n / connections);
  const counts = await Promise.all(
    Array.from({ length: connections }, async (_, i) => {
      const c = new pg.Client(config);
      await c.connect();
      try {
        let done = 0;
        let changes = 0;
        const mine = Math.min(per, n - i * per);
        while (done < mine) {
          const batch = Math.min(5000, mine - done);
          const res = await c.query<{ changes: string }>('CALL bench.churn($1)', [batch]);
          changes += Number(res.rows[0]?.changes ?? 0);
          done += batch;
        }
        return changes;
      } finally {
        await c.end();
      }
    }),
  );
  return counts.reduce((a, b) => a + b, 0);
}

/** Moves the heartbeat and returns its new value (microseconds since the epoch, as text). */
export async function beat(c: pg.Client): Promise<string> {
  const res = await c.query<{ at: string }>(
    'UPDATE bench.heartbeat SET at = pg_catalog.clock_timestamp() WHERE id = 1 RETURNING (extract(epoch FROM at) * 1000000)::bigint::text AS at',
  );
  return res.rows[0]?.at ?? '0';
}

export async function readBeat(c: pg.Client): Promise<string | undefined> {
  const res = await c.query<{ at: string }>(
    'SELECT (extract(epoch FROM at) * 1000000)::bigint::text AS at FROM bench.heartbeat WHERE id = 1',
  );
  return res.rows[0]?.at;
}

export interface PacedResult {
  transactions: number;
  changes: number;
  seconds: number;
}

/**
 * `rate` transactions a second for `seconds`, with the heartbeat moved every `beatMs`
 * (those updates are transactions too, counted in the rate).
 */
export async function writePaced(
  config: pg.ClientConfig,
  rate: number,
  seconds: number,
  beatMs = 50,
): Promise<PacedResult> {
  const writer = new pg.Client(config);
  const beater = new pg.Client(config);
  await Promise.all([writer.connect(), beater.connect()]);
  const started = Date.now();
  const end = started + seconds * 1000;
  let beats = 0;
  const heartbeat = (async () => {
    while (Date.now() < end) {
      await beat(beater);
      beats++;
      await sleep(beatMs);
    }
  })();
  let transactions = 0;
  let changes = 0;
  try {
    for (let now = Date.now(); now < end; now = Date.now()) {
      const due = Math.floor(((now - started) / 1000) * rate) - transactions - beats;
      if (due > 0) {
        const res = await writer.query<{ changes: string }>('CALL bench.churn($1)', [due]);
        changes += Number(res.rows[0]?.changes ?? 0);
        transactions += due;
      } else await sleep(10);
    }
    await heartbeat;
  } finally {
    await Promise.all([writer.end(), beater.end()]);
  }
  return {
    transactions: transactions + beats,
    changes: changes + beats,
    seconds: (Date.now() - started) / 1000,
  };
}
