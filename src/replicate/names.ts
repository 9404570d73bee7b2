/**
 * The names of everything pgconvoy creates for replication, from one function, so that
 * `start`, `status`, `cutover`, `rollback` and `teardown` always agree on them, and an
 * operator can tell pgconvoy's objects apart from anybody else's by the `pgconvoy_` prefix.
 *
 * Replication slot names may only hold lower-case letters, digits and underscores, at
 * most 63 bytes; the same name is used for the publication and the subscription too, so
 * one name finds all three. A database name that has to be changed to fit (upper case,
 * punctuation, length) gets a short hash of the original, so two databases never share
 * a name.
 */
import { createHash } from 'node:crypto';

/** Every object pgconvoy creates for replication starts with this. */
export const PGCONVOY_PREFIX = 'pgconvoy_';
/** Back-replication (target → source, for rollback after cutover) objects start with this. */
export const PGCONVOY_BACK_PREFIX = 'pgconvoy_back_';

/** NAMEDATALEN - 1 */
const MAX_NAME_BYTES = 63;

export interface ReplicationNames {
  /** Source → target: publication on the source. */
  publication: string;
  /** Source → target: logical replication slot on the source. */
  slot: string;
  /** Source → target: subscription on the target. */
  subscription: string;
  /** Target → source (rollback): publication on the target. */
  backPublication: string;
  /** Target → source (rollback): slot on the target. */
  backSlot: string;
  /** Target → source (rollback): subscription on the source. */
  backSubscription: string;
}

function slotSafe(prefix: string, database: string): string {
  const cleaned = database.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  const plain = prefix + cleaned;
  if (cleaned === database && plain.length <= MAX_NAME_BYTES) return plain;
  const hash = createHash('sha256').update(database).digest('hex').slice(0, 8);
  const room = MAX_NAME_BYTES - prefix.length - hash.length - 1;
  return `${prefix}${cleaned.slice(0, room)}_${hash}`;
}

/**
 * Names for the replication of source database `sourceDatabase`.
 *
 * @example replicationNames('shop')       // { publication: 'pgconvoy_shop', ..., backSlot: 'pgconvoy_back_shop' }
 * @example replicationNames('Shop-Prod')  // { publication: 'pgconvoy_shop_prod_3f2a9c1e', ... }
 */
export function replicationNames(sourceDatabase: string): ReplicationNames {
  const forward = slotSafe(PGCONVOY_PREFIX, sourceDatabase);
  const back = slotSafe(PGCONVOY_BACK_PREFIX, sourceDatabase);
  return {
    publication: forward,
    slot: forward,
    subscription: forward,
    backPublication: back,
    backSlot: back,
    backSubscription: back,
  };
}

/** Does this slot, publication or subscription name look like one of pgconvoy's? */
export function isPgconvoyName(name: string): boolean {
  return name.startsWith(PGCONVOY_PREFIX);
}
