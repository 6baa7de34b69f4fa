/**
 * Which partition of the event log an event goes to. A conversation's events all go to the
 * partition of its id, so their order is one partition's position order; an event addressed to
 * a user alone goes to the partition of the user id. The hash is FNV-1a (32-bit) over the key's
 * UTF-8 bytes: stable across releases and platforms, cheap, and spread evenly enough over ids.
 */

/** The most partitions a deployment may have (cursors carry one position per partition). */
export const MAX_PARTITIONS = 1024;

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** The partition of a key (a conversation id, or a user id for user-only events). */
export function partitionOf(key: string, partitions: number): number {
  let hash = FNV_OFFSET;
  for (const byte of Buffer.from(key, "utf8")) {
    hash ^= byte;
    hash = Math.imul(hash, FNV_PRIME) >>> 0;
  }
  return hash % partitions;
}

/** What an event is routed by: its conversation, or the one user it is addressed to. */
export function eventPartitionKey(event: { conversationId: string | null; targetUserId?: string | null }): string {
  const key = event.conversationId ?? event.targetUserId;
  if (!key) throw new Error("an event needs a conversation or a target user");
  return key;
}
