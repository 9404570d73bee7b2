/**
 * The target server before anything of the clone is written to it, for clone and online start:
 *
 *   roles (copied with --roles, otherwise the missing ones refused with what to run) →
 *   extensions the target server lacks (refused, with the package to install) →
 *   tablespaces the schema names (refused when missing, after --tablespace-map) →
 *   the database (opened, or created as the source's with --create-database) →
 *   a warning when its encoding or collation differs from the source's.
 *
 * Roles and tablespaces are the server's, not the database's: they are read through the
 * target database when it exists, otherwise through the maintenance database.
 */
import type pg from 'pg';
import { openClient } from '../connect/open-client.js';
import { openOrCreateDatabase } from '../connect/open-or-create.js';
import { withDatabase } from '../connect/resolve.js';
import { closeQuietly } from '../connect/session.js';
import { PgconvoyError } from '../errors.js';
import { serverMajor } from '../inventory/server-info.js';
import { collationMismatch, createDatabaseLike, readDatabaseDefinition } from '../schema/database-create.js';
import { extensionGaps, missingExtensionsError } from '../schema/extensions.js';
import { copyRoles, missingRoles, missingRolesError, readReferencedRoles } from '../schema/roles.js';
import { checkTargetTablespaces, readSchemaTablespaces } from '../schema/tablespaces.js';
import type { CloneEvent, CloneOptions } from './clone-types.js';

async function openTargetServer(o: CloneOptions, applicationName: string): Promise<pg.Client> {
  try {
    return await openClient(o.target, { applicationName });
  } catch (err) {
    if (!(err instanceof PgconvoyError) || err.code !== 'NO_DATABASE') throw err;
    return openClient(withDatabase(o.target, 'postgres'), { applicationName });
  }
}

/**
 * Checks (and with --roles, fills) the target server, then opens the target database,
 * creating it as the source's when asked. Returns the open target session.
 */
export async function prepareTarget(
  o: CloneOptions,
  source: pg.Client,
  sourceMajor: number,
  applicationName: string,
  emit: (e: CloneEvent) => void,
): Promise<pg.Client> {
  const map = o.tablespaceMap ?? new Map<string, string>();
  const server = await openTargetServer(o, applicationName);
  try {
    if (o.roles || o.schema === 'apply') {
      const referenced = await readReferencedRoles(source, [o.ledgerSchema]);
      if (o.roles) {
        await copyRoles(source, server, {
          roles: referenced.map((r) => r.name),
          passwords: Boolean(o.rolePasswords),
          onWarning: (message) => emit({ type: 'warning', message }),
          onInfo: (message) => emit({ type: 'info', message }),
        });
      } else {
        const missing = await missingRoles(referenced, server, o);
        if (missing.length > 0) throw missingRolesError(missing);
      }
    }
    // The schema's CREATE EXTENSION would fail halfway: say which package is missing now.
    if (o.schema === 'apply') {
      const gaps = await extensionGaps(source, server);
      if (gaps.missing.length > 0) throw missingExtensionsError(gaps, await serverMajor(server));
    }
    if (o.schema === 'apply' && !o.noTablespaces)
      await checkTargetTablespaces(server, await readSchemaTablespaces(source, [o.ledgerSchema]), map);
  } finally {
    await closeQuietly(server);
  }

  const sourceDatabase = await readDatabaseDefinition(source, sourceMajor);
  const target = await openOrCreateDatabase(o.target, {
    applicationName,
    create: o.createDatabase,
    onCreated: (message) => emit({ type: 'info', message }),
    onWarning: (message) => emit({ type: 'warning', message }),
    createLike: async (admin) => {
      const space = sourceDatabase.tablespace;
      const tablespace = o.noTablespaces || space === 'pg_default' ? undefined : (map.get(space) ?? space);
      if (tablespace) await checkTargetTablespaces(admin, [tablespace], new Map());
      return createDatabaseLike(source, sourceMajor, admin, {
        name: o.target.database,
        targetMajor: await serverMajor(admin),
        noOwner: o.noOwner,
        noPrivileges: o.noPrivileges,
        tablespace,
      });
    },
  });
  try {
    const targetDatabase = await readDatabaseDefinition(target, await serverMajor(target));
    const mismatch = collationMismatch(sourceDatabase, targetDatabase);
    if (mismatch) emit({ type: 'warning', message: `${mismatch.message}; ${mismatch.hint}` });
  } catch (err) {
    await closeQuietly(target);
    throw err;
  }
  return target;
}
