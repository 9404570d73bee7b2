/**
 * The check after each test that it left nothing of pgconvoy's running on the servers it used:
 * no session named `pgconvoy…` (but `pgconvoy test…`: a file's own fixture sessions, held
 * across its tests), no replication slot, no subscription that was not there before
 * it. One query per server per test (slots and subscriptions are cluster-wide catalogs; a
 * publication lives in its database, so it is caught through the slot or subscription that
 * goes with it). A file whose tests hand state from one step to the next says so, by name,
 * with `allowLeftovers`.
 */
import { afterEach } from 'node:test';
import type { LocalServer } from '../../src/sandbox/local-server.js';
import { sleep } from '../../src/util/wait.js';

interface Watched {
  server: LocalServer;
  /** What an earlier look reported already: not the next test's doing. */
  known: Set<string>;
}

const watched: Watched[] = [];
let allowedBecause: string | undefined;

// A session whose client just disconnected leaves pg_stat_activity a moment later.
const SETTLE_ATTEMPTS = 20;
const SETTLE_MS = 100;

const LEFTOVERS_SQL = `
SELECT 'session ' || a.pid || ' (' || a.application_name || ')' AS item
  FROM pg_catalog.pg_stat_activity a
 WHERE a.application_name LIKE 'pgconvoy%' AND a.application_name NOT LIKE 'pgconvoy test%'
   AND a.pid <> pg_catalog.pg_backend_pid()
UNION ALL
SELECT 'replication slot ' || pg_catalog.quote_ident(s.slot_name::text) FROM pg_catalog.pg_replication_slots s
UNION ALL
SELECT 'subscription ' || pg_catalog.quote_ident(s.subname::text) FROM pg_catalog.pg_subscription s`;

/** Follows `server` for the rest of the file (startServer does this). */
export function watchForLeftovers(server: LocalServer): void {
  watched.push({ server, known: new Set() });
}

/**
 * Turns the check off for this file, for a reason that says which state its tests hand on
 * (e.g. 'start in one test, cutover in the next').
 */
export function allowLeftovers(reason: string): void {
  allowedBecause = reason;
}

async function leftovers(w: Watched): Promise<string[]> {
  const rows = await w.server.sql<{ item: string }>(LEFTOVERS_SQL);
  return rows.map((r) => r.item).filter((item) => !w.known.has(item));
}

/** What `w`'s server holds that the test just finished left behind; then the new baseline. */
async function check(w: Watched): Promise<string[]> {
  if (!w.server.running) return [];
  let found: string[] = [];
  for (let attempt = 1; attempt <= SETTLE_ATTEMPTS; attempt++) {
    try {
      found = await leftovers(w);
    } catch {
      return []; // stopped or restarting: nothing to read
    }
    if (found.length === 0) break;
    await sleep(SETTLE_MS);
  }
  // Reported once: the next test is not blamed for this one's leftovers.
  for (const item of found) w.known.add(item);
  return found;
}

/** What the watched servers hold that was not there at the previous look, one line per server. */
export async function findLeftovers(): Promise<string[]> {
  const problems: string[] = [];
  for (const w of watched) {
    const found = await check(w);
    if (found.length > 0) problems.push(`port ${w.server.port}: ${found.join(', ')}`);
  }
  return problems;
}

afterEach(async () => {
  if (allowedBecause !== undefined || watched.length === 0) return;
  const problems = await findLeftovers();
  if (problems.length > 0)
    throw new Error(
      `the test left pgconvoy state behind (${problems.join('; ')}): close it in the test, or call allowLeftovers('why') for a file whose tests hand it on`,
    );
});
