/**
 * The optional config file (`--config pgconvoy.conf`), INI-style like Flexy's config.ini:
 *
 *   # comments
 *   [source]
 *   url = postgresql://app@db1.example.com/shop      (or libpq keywords: host = ..., dbname = ...)
 *   [target]
 *   host = db2.example.com
 *   dbname = shop
 *   [clone]
 *   jobs = 8
 *
 * Every error names the file and the line.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { EXIT } from '../defaults.js';
import { PgconvoyError } from '../errors.js';
import { KNOWN_KEYWORDS, formatConninfoWithPassword } from '../connect/conninfo.js';

export interface PgconvoyConfig {
  source?: string;
  target?: string;
  /** Options of commands, as strings, by `section.key` (e.g. "clone.jobs"). */
  options: Record<string, string | number | boolean>;
}

const OPTION_SCHEMAS: Record<string, z.ZodTypeAny> = {
  jobs: z.coerce.number().int().min(1).max(256),
  'index-jobs': z.coerce.number().int().min(1).max(64),
  'ledger-schema': z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a plain SQL name'),
  'run-dir': z.string().min(1),
  'split-tables-larger-than': z.string().regex(/^\d+(\.\d+)?\s*[kKmMgGtT]?i?[bB]?$/, 'a size such as 10GB'),
  'chunk-size': z.string().regex(/^\d+(\.\d+)?\s*[kKmMgGtT]?i?[bB]?$/, 'a size such as 1GB'),
  indexes: z.enum(['before', 'after']),
  schema: z.enum(['apply', 'skip']),
  'pg-bin': z.string().min(1),
};

function configError(file: string, line: number, message: string, hint: string): PgconvoyError {
  return new PgconvoyError(`${file}:${line}: ${message}`, {
    code: 'BAD_CONFIG',
    hint,
    exitCode: EXIT.config,
  });
}

export function readConfigFile(file: string): PgconvoyConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new PgconvoyError(`cannot read config file "${file}"`, {
      code: 'BAD_CONFIG',
      hint: 'check the path given to --config',
      exitCode: EXIT.config,
      cause: err,
    });
  }
  const config: PgconvoyConfig = { options: {} };
  const servers: Record<'source' | 'target', Record<string, string>> = { source: {}, target: {} };
  let section: string | undefined;
  text.split(/\r?\n/).forEach((raw, index) => {
    const lineNo = index + 1;
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) return;
    const header = /^\[([A-Za-z_-]+)\]$/.exec(line);
    if (header) {
      section = header[1]!;
      return;
    }
    const eq = line.indexOf('=');
    if (eq < 0)
      throw configError(
        file,
        lineNo,
        `expected "key = value", got "${line.slice(0, 40)}"`,
        'each line is a [section] or key = value',
      );
    const key = line.slice(0, eq).trim();
    let value = line.slice(eq + 1).trim();
    if (/^".*"$/.test(value) || /^'.*'$/.test(value)) value = value.slice(1, -1);
    if (section === undefined)
      throw configError(
        file,
        lineNo,
        `"${key}" is outside any section`,
        'put it under [source], [target] or a command such as [clone]',
      );
    if (section === 'source' || section === 'target') {
      if (key !== 'url' && !KNOWN_KEYWORDS.has(key)) {
        throw configError(
          file,
          lineNo,
          `unknown connection parameter "${key}"`,
          `use url = postgresql://... or libpq keywords (${[...KNOWN_KEYWORDS].slice(0, 8).join(', ')}, ...)`,
        );
      }
      servers[section][key] = value;
      return;
    }
    const schema = OPTION_SCHEMAS[key];
    if (!schema)
      throw configError(
        file,
        lineNo,
        `unknown option "${key}" in [${section}]`,
        `known options: ${Object.keys(OPTION_SCHEMAS).join(', ')}`,
      );
    const parsed = schema.safeParse(value);
    if (!parsed.success)
      throw configError(
        file,
        lineNo,
        `bad value for "${key}": ${parsed.error.issues[0]?.message ?? 'invalid'}`,
        `fix the value on line ${lineNo}`,
      );
    config.options[`${section}.${key}`] = parsed.data as string | number | boolean;
  });
  for (const side of ['source', 'target'] as const) {
    const s = servers[side];
    if (Object.keys(s).length === 0) continue;
    const { url, ...keywords } = s;
    config[side] = url ?? formatConninfoWithPassword(keywords);
    if (url !== undefined && Object.keys(keywords).length > 0) {
      throw new PgconvoyError(`${file}: [${side}] mixes url with other keys`, {
        code: 'BAD_CONFIG',
        hint: 'give either url = ... or libpq keywords, not both',
        exitCode: EXIT.config,
      });
    }
  }
  return config;
}
