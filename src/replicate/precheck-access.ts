/**
 * precheck rows for what the roles may see: on the source, tables with row-level security
 * (each with whether the role bypasses it) and tables the role may not read; on the target,
 * tables whose policies would refuse the load. A table that cannot be read or loaded whole
 * is a `fail`: the copy would stop at it (see inventory/read-access.ts).
 */
import type pg from 'pg';
import { accessProblems, readAccess, rowSecurityLines } from '../inventory/read-access.js';
import { firstItems, row, type PrecheckRow } from './precheck-rows.js';

export async function checkReadAccess(
  client: pg.Client,
  side: 'source' | 'target',
  ledgerSchema: string,
): Promise<PrecheckRow[]> {
  const access = await readAccess(client, ledgerSchema);
  const problems = accessProblems(access, side, side === 'source' ? 'read' : 'load');
  const filtering = problems.find((p) => p.code === 'ROW_SECURITY_FILTERS');
  const rows: PrecheckRow[] = [];
  const rls = { id: `${side}.row_security`, side, check: 'row-level security' };
  if (filtering) {
    // Every table with row-level security, the bypassed ones too: the user sees the whole picture.
    rows.push(
      row({
        ...rls,
        status: 'fail',
        detail: filtering.detail,
        hint: filtering.hint,
        items: firstItems(rowSecurityLines(access), 50),
      }),
    );
  } else if (access.rowSecurity.length > 0) {
    rows.push(
      row({
        ...rls,
        status: 'info',
        detail: `${access.rowSecurity.length} table(s) with row-level security; the ${side} role "${access.role.name}" sees all their rows`,
        items: firstItems(rowSecurityLines(access), 50),
      }),
    );
  } else {
    rows.push(row({ ...rls, status: 'pass', detail: 'no table has row-level security enabled' }));
  }
  if (side === 'source') {
    const unreadable = problems.find((p) => p.code === 'TABLE_NOT_READABLE');
    const select = { id: 'source.select_rights', side, check: 'read rights' };
    rows.push(
      unreadable
        ? row({
            ...select,
            status: 'fail',
            detail: unreadable.detail,
            hint: unreadable.hint,
            items: firstItems(unreadable.items),
          })
        : row({ ...select, status: 'pass', detail: `role "${access.role.name}" may read every table` }),
    );
  }
  return rows;
}
