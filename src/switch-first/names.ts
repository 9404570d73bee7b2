/**
 * Names of what switch-first creates, derived from the ledger schema's name so that two
 * ledgers on one target never share them: on the target the foreign server and the private
 * schema of the foreign tables; on the source the journal of batches in flight.
 */
import type { RemoteServerNames } from '../fdw/remote-server.js';

export interface SwitchFirstNames extends RemoteServerNames {
  /** Schema on the source that holds the journal (created by prepare if missing). */
  journalSchema: string;
  journalTable: string;
}

export function switchFirstNames(ledgerSchema: string): SwitchFirstNames {
  return {
    server: `${ledgerSchema}_switch_first`,
    schema: `${ledgerSchema}_switch_first_tables`,
    journalSchema: ledgerSchema,
    journalTable: 'switch_first_journal',
  };
}
