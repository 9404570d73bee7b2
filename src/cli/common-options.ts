import { readConfigFile, type PgferryConfig } from './config-file.js';

export function loadConfig(file: string | undefined): PgferryConfig | undefined {
  return file === undefined ? undefined : readConfigFile(file);
}
