import { readConfigFile, type PgconvoyConfig } from './config-file.js';

export function loadConfig(file: string | undefined): PgconvoyConfig | undefined {
  return file === undefined ? undefined : readConfigFile(file);
}
