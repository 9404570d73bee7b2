import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import pg from 'pg';
import { resolveConnection } from '../src/connect/resolve.js';
import { CopyWorker } from '../src/copy/copy-worker.js';
import { JobLedger } from '../src/ledger/jobs.js';
import { ensureLedger } from '../src/ledger/ledger-schema.js';
import type { LocalServer } from '../src/sandbox/local-server.js';
import { sleep } from '../src/util/wait.js';
import { SYSTEM_MAJOR, createDatabase, startServer, uniqueName } from './helpers/servers.js';

describe('copy worker', () => {
  let server: LocalServer;
  before(async () => {
    server = await startServer(SYSTEM_MAJOR);
  });
  after(async () => server?.destroy());

  test('an idle worker waiting for a job held by another worker leaves no abort listener behind', async () => {
    const db = await createDatabase(server, uniqueName('idle_worker'));
    await server.sql('CREATE TABLE public.t (id bigint PRIMARY KEY)', db);
    const holder = new pg.Client({ connectionString: server.url(db) });
    await holder.connect();
    const controller = new AbortController();
    try {
      await ensureLedger(holder, 'pgconvoy');
      const ledger = new JobLedger('pgconvoy');
      await ledger.addJobs(holder, [
        {
          table: { schema: 'public', name: 't' },
          chunk: { kind: 'whole' },
          chunkLabel: 'whole table',
          chunkCount: 1,
          estimatedBytes: 0,
          copyFormat: 'text',
        },
      ]);
      // Another worker holds the only job: this one waits for it, once a second.
      await holder.query('BEGIN');
      assert.ok(await ledger.claimNext(holder));
      const warnings: Error[] = [];
      const onWarning = (w: Error) => warnings.push(w);
      process.on('warning', onWarning);
      const worker = new CopyWorker('idle', {
        source: resolveConnection(server.url(db), 'source', {}),
        target: resolveConnection(server.url(db), 'target', {}),
        ledger,
        snapshot: undefined,
        sourceColumns: new Map(),
        targetColumns: new Map(),
        excludeColumns: new Set(),
        truncatable: new Set(),
        targetPartitioned: new Set(),
        replicationRole: false,
        groupSize: 1,
        maxAttempts: 3,
        onEvent: () => undefined,
        signal: controller.signal,
        snapshotLost: { value: false },
        snapshotRequired: false,
      });
      const running = worker.run();
      await sleep(4500);
      // The worker's own abort handler plus at most the wait in progress.
      const listeners = getEventListeners(controller.signal, 'abort').length;
      controller.abort();
      await running;
      process.off('warning', onWarning);
      assert.ok(listeners <= 2, `${listeners} abort listeners after 4 idle waits`);
      assert.deepEqual(
        warnings.filter((w) => w.name === 'MaxListenersExceededWarning'),
        [],
      );
      assert.equal(getEventListeners(controller.signal, 'abort').length, 0, 'all removed once stopped');
    } finally {
      controller.abort();
      await holder.end();
    }
  });
});
