import type { Command } from 'commander';
import { readConfigFile, type PgconvoyConfig } from './config-file.js';

export function loadConfig(file: string | undefined): PgconvoyConfig | undefined {
  return file === undefined ? undefined : readConfigFile(file);
}

/**
 * `ledger-schema` from the config file, for every command that has --ledger-schema: the
 * command's own section first, then [clone] (the command that writes the ledger). A value
 * given on the command line wins; the built-in default comes last.
 */
export function ledgerSchemaFromConfig(command: Command): void {
  if (!command.options.some((o) => o.attributeName() === 'ledgerSchema')) return;
  const source = command.getOptionValueSource('ledgerSchema');
  if (source !== undefined && source !== 'default') return;
  const config = loadConfig(command.getOptionValue('config') as string | undefined);
  const value = config?.options[`${command.name()}.ledger-schema`] ?? config?.options['clone.ledger-schema'];
  if (typeof value === 'string') command.setOptionValueWithSource('ledgerSchema', value, 'config');
}
