/**
 * The human form of a verify report: where each side was read (snapshot, WAL position), a
 * table of tables, then every difference found with its table, chunk and key, then the
 * schema differences, and one result line. Plain text: it survives pipes and logs.
 * (Used by `pgconvoy verify` and by any command that verifies, e.g. clone --verify.)
 */
import { formatCount, formatDuration } from '../util/format.js';
import { displayIdent, displayName } from '../util/sql.js';
import { textTable } from '../util/text-table.js';
import type { RowDifference, SchemaDifference, SideInfo, TableResult, VerifyReport } from './types.js';

/** A value as it would be read: NULL, or a quoted string with escapes, cut when long. */
export function showValue(value: string | null): string {
  if (value === null) return 'NULL';
  const shown = JSON.stringify(value);
  return shown.length > 80 ? `${shown.slice(0, 77)}…"` : shown;
}

/** A row text as the server printed it, with control characters escaped, cut when long. */
function showRow(row: string): string {
  // eslint-disable-next-line no-control-regex
  const shown = row.replace(/[\u0000-\u001f]/g, (c) => JSON.stringify(c).slice(1, -1));
  return shown.length > 160 ? `${shown.slice(0, 159)}…` : shown;
}

const showKey = (key: Record<string, string>) =>
  Object.entries(key)
    .map(([k, v]) => `${displayIdent(k)}=${v}`)
    .join(', ');

function describeDifference(d: RowDifference): string {
  const where =
    d.chunk.range !== d.chunk.label
      ? `chunk ${d.chunk.label}, range ${d.chunk.range}`
      : `chunk ${d.chunk.label}`;
  switch (d.kind) {
    case 'missing on target':
    case 'extra on target':
      return `${d.kind}: ${showKey(d.key)}  (${where})`;
    case 'changed':
      return (
        `changed: ${showKey(d.key)}  (${where}): ` +
        d.columns
          .map((c) => `${displayIdent(c.name)} ${showValue(c.source)} → ${showValue(c.target)}`)
          .join('; ')
      );
    case 'content':
      return `${d.sourceCount} row(s) on source, ${d.targetCount} on target with content ${showRow(d.row)}  (${where})`;
    case 'not listed':
      return `${formatCount(d.sourceRows)} rows on source, ${formatCount(d.targetRows)} on target, too many to list  (${where})`;
  }
}

function describeSchema(d: SchemaDifference): string {
  const detail =
    d.source !== undefined || d.target !== undefined
      ? `: source ${d.source ?? '-'}; target ${d.target ?? '-'}`
      : '';
  return `${d.kind} ${d.object}: ${d.problem}${detail}`;
}

function sideLine(label: string, s: SideInfo): string {
  const snap = s.snapshot ? `, snapshot ${s.snapshot}${s.lsn ? ` at LSN ${s.lsn}` : ''}` : '';
  return `${label}  ${s.connection}  PostgreSQL ${s.version}${snap}`;
}

const rowsText = (n: number | undefined) => (n === undefined ? '-' : formatCount(n));

function tableRow(t: TableResult): string[] {
  const chunks = t.chunks.total
    ? `${t.chunks.total}${t.chunks.differing ? ` (${t.chunks.differing} differ)` : ''}`
    : '-';
  return [
    displayName(t.schema, t.name),
    rowsText(t.rows.source),
    rowsText(t.rows.target),
    chunks,
    t.method ?? '-',
    t.status === 'match' ? 'match' : t.status.toUpperCase(),
    formatDuration(t.seconds * 1000),
  ];
}

export function formatReport(report: VerifyReport): string[] {
  const lines: string[] = [sideLine('source', report.source), sideLine('target', report.target), ''];
  lines.push(
    textTable(
      ['TABLE', 'ROWS SOURCE', 'ROWS TARGET', 'CHUNKS', 'METHOD', 'STATUS', 'TIME'],
      report.tables.map(tableRow),
    ),
  );
  const withRows = report.tables.filter((t) => t.differences.length > 0 || t.truncated);
  if (withRows.length) {
    lines.push('', 'Row differences');
    for (const t of withRows) {
      lines.push(`  ${displayName(t.schema, t.name)}`);
      for (const d of t.differences) lines.push(`    ${describeDifference(d)}`);
      if (t.truncated) lines.push(`    … more differences not listed (raise --max-diffs to see more)`);
    }
  }
  const failing = report.schema.filter((d) => d.severity === 'difference');
  const notes = report.schema.filter((d) => d.severity === 'note');
  if (failing.length) lines.push('', 'Schema differences', ...failing.map((d) => `  ${describeSchema(d)}`));
  if (notes.length)
    lines.push('', 'Notes (not counted as differences)', ...notes.map((d) => `  ${describeSchema(d)}`));
  const c = report.counts;
  lines.push(
    '',
    report.ok
      ? `OK: target matches source: ${c.tables} table(s), no schema differences, in ${formatDuration(report.seconds * 1000)}`
      : `DIFFERENT: ${c.tablesDiffering} of ${c.tables} table(s) differ, ${c.schemaDifferences} schema difference(s), in ${formatDuration(report.seconds * 1000)}`,
  );
  return lines;
}
