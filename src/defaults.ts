/**
 * Every default, environment variable and exit code of pgconvoy, in one place.
 * The library never reads process.env itself except through `libpqEnvironment()` in
 * connect/, which is handed `process.env` by the command line.
 */
import os from 'node:os';

export const EXIT = {
  ok: 0,
  /** Something failed during the run (a job, a phase). The target is resumable. */
  failed: 1,
  /** Bad command-line arguments. */
  usage: 2,
  /** Bad configuration file or queue file, or the PostgreSQL client tools (pg_dump, psql) not found. */
  config: 3,
  /** The source could not be reached or read. */
  source: 4,
  /** The target could not be reached or written. */
  target: 5,
  /** Verification found differences. */
  mismatch: 6,
  /** A precheck found something that blocks. */
  blocked: 7,
  /** Interrupted by SIGINT/SIGTERM. */
  interrupted: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export const DEFAULTS = {
  /** Copy workers. Two servers and pgconvoy share the CPU on small machines; 4 keeps them busy. */
  jobs: Math.max(2, Math.min(8, os.availableParallelism())),
  indexJobs: Math.max(1, Math.min(4, Math.floor(os.availableParallelism() / 2))),
  /** Name of the schema on the target that holds pgconvoy's ledger. */
  ledgerSchema: 'pgconvoy',
  /** Where run files (schema dumps, status file, logs) go. */
  runDir: '.pgconvoy',
  splitTablesLargerThan: 1024 ** 3, // 1 GiB
  chunkSize: 256 * 1024 ** 2, // 256 MiB
  connectTimeoutSeconds: 10,
  /**
   * How long a source statement of pgconvoy waits for a table lock (pg_dump's
   * --lock-wait-timeout, CREATE/ALTER PUBLICATION) before it says what it waited for, instead
   * of queueing the application's queries behind it for as long as a long transaction lasts.
   */
  lockWaitTimeoutMs: 60_000,
  /**
   * How long an online command waits for another one on the same migration to end (a run
   * killed a moment ago keeps its lock until its server session notices) before ONLINE_BUSY.
   */
  onlineLockWaitMs: 10_000,
  /** TCP keepalives: a dead network fails a session in about idle + interval × count seconds, not hours. */
  keepalivesIdleSeconds: 30,
  keepalivesIntervalSeconds: 10,
  keepalivesCount: 3,
  /** Retries of a job after a transient failure (connection lost, deadlock, ...). */
  jobRetries: 5,
  retryBaseDelayMs: 500,
  retryMaxDelayMs: 30_000,
  applicationName: 'pgconvoy',
  /** precheck: transactions open longer than this are reported (they delay the slot). */
  longTransactionSeconds: 300,
  /** maintenance_work_mem of the sessions that build indexes (clone, start). */
  maintenanceWorkMem: '512MB',
  /** verify: differing rows listed per table before it stops looking. */
  verifyMaxDiffs: 20,
  /** How long creating a replication slot may wait for the source to become consistent. */
  slotCreateTimeoutMs: 10 * 60_000,
  /** How long dropping a replication slot may wait for its streaming process to go. */
  slotDropTimeoutMs: 30_000,
  /** cutover: refuse when the target is further behind than this. */
  cutoverMaxLag: '64MB',
  /** cutover: catching up and freezing writes may take this long, each; rollback's catch-up too. */
  onlineTimeoutSeconds: 300,
  /** cutover: how long the source must stay quiet to count as frozen. */
  freezeCheckMs: 500,
  /** How long waiting for the subscriber to catch up may take, and how often it is asked. */
  catchUpTimeoutMs: 5 * 60_000,
  catchUpPollMs: 200,
  /** switch-first move: rows per batch (one source and one target transaction each). */
  switchFirstBatchRows: 5000,
  /**
   * switch-first move: how long a batch waits for its table lock before it gives way and is
   * retried (the application's statements on that table queue behind the waiting batch).
   */
  switchFirstLockTimeoutMs: 1000,
  /** switch-first move: failures in a row (lost sessions, lock waits) before a table's move stops. */
  switchFirstRetries: 10,
  /**
   * switch-first prepare: increments each target sequence is set past the source's, for the
   * rows the application inserts on the source until it switches.
   */
  switchFirstSequenceMargin: 100_000,
} as const;
