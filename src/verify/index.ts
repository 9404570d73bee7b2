/** verify's public surface: `verifyDatabases` and the report it returns. */
export { verifyDatabases } from './verify-databases.js';
export { formatReport } from './report-text.js';
export * from './types.js';
