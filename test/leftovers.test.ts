/**
 * The harness' leftover check (test/helpers/leftovers.ts) sees a pgconvoy session and a
 * replication slot a test leaves behind, and nothing once they are gone.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { findLeftovers } from './helpers/leftovers.js';
import { startServer, SYSTEM_MAJOR } from './helpers/servers.js';

let server: LocalServer;
before(async () => {
  server = await startServer(SYSTEM_MAJOR, { settings: { wal_level: 'logical' } });
});
after(async () => server?.destroy());

test('a pgconvoy session and a slot left open are reported, and no longer once gone', async () => {
  const client = new pg.Client({
    ...server.clientConfig('postgres'),
    application_name: 'pgconvoy leak probe',
  });
  await client.connect();
  await server.sql("SELECT pg_catalog.pg_create_logical_replication_slot('pgconvoy_leak_probe', 'pgoutput')");
  try {
    const found = (await findLeftovers()).join('\n');
    assert.match(found, /session \d+ \(pgconvoy leak probe/);
    assert.match(found, /replication slot pgconvoy_leak_probe/);
  } finally {
    await client.end();
    await server.sql("SELECT pg_catalog.pg_drop_replication_slot('pgconvoy_leak_probe')");
  }
  assert.deepEqual(await findLeftovers(), []);
});
