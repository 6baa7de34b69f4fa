/**
 * Every SQL statement about reactions. Writes are set-based (one statement per step for a
 * whole batch, over unnest()ed arrays) so a batch of reactions costs a handful of round trips
 * however many callers it serves.
 */
import { sql, type Kysely, type Transaction } from "kysely";
import type { Database } from "../db/schema.ts";
import type { RetentionCutoff } from "../retention/retention-policy.ts";

type Db = Kysely<Database> | Transaction<Database>;

/** A user acting on (or looking at) one message. */
export interface ReactionTarget {
  conversationId: string;
  /** The message's seq, as a decimal string (int8 columns are strings here). */
  seq: string;
  userId: string;
}

/** One user's reaction with one emoji to one message: a row of message_reactions. */
export interface ReactionKey extends ReactionTarget {
  emoji: string;
}

/** A change to one message's count of one emoji. */
export interface CountDelta {
  conversationId: string;
  seq: string;
  emoji: string;
  delta: number;
}

/** One emoji of one message as one viewer sees it. */
export interface ReactionSummaryRow {
  conversation_id: string;
  seq: string;
  user_id: string;
  emoji: string;
  count: string;
  reacted_by_me: boolean;
}

export function targetKey(t: { conversationId: string; seq: string; userId: string }): string {
  return `${t.conversationId}/${t.seq}/${t.userId}`;
}

export function reactionKey(k: ReactionKey): string {
  return JSON.stringify([k.conversationId, k.seq, k.emoji, k.userId]);
}

export function countKey(k: { conversationId: string; seq: string; emoji: string }): string {
  return JSON.stringify([k.conversationId, k.seq, k.emoji]);
}

/**
 * The targets whose user is a member of the conversation and whose message exists (and is
 * not deleted: a tombstone takes no reactions; nor past retention at the cutoff), keyed by
 * targetKey. Locks what the batch depends on until commit: each message row (FOR NO KEY
 * UPDATE, taken in (conversation, seq) order so concurrent batches never deadlock) serializes
 * every reaction write to that message, so the reads and upserts that follow see no
 * concurrent writer; each membership row (FOR KEY SHARE) keeps a concurrent removal from
 * committing between this check and the reaction. Neither lock blocks sends, reads, replies,
 * read receipts or role changes.
 */
export async function lockReactionTargets(tx: Transaction<Database>, targets: readonly ReactionTarget[], cutoff: RetentionCutoff): Promise<Set<string>> {
  if (targets.length === 0) return new Set();
  const result = await sql<{ conversation_id: string; seq: string; user_id: string }>`
    select k.c as conversation_id, k.s as seq, k.u as user_id
    from unnest(${targets.map((t) => t.conversationId)}::uuid[], ${targets.map((t) => t.seq)}::int8[],
                ${targets.map((t) => t.userId)}::text[]) as k(c, s, u)
    join conversation_members m on m.conversation_id = k.c and m.user_id = k.u
    join conversations c on c.id = k.c
    join messages msg on msg.conversation_id = k.c and msg.seq = k.s and msg.deleted_at is null and ${cutoff.retainedSql("msg.created_at", "c")}
    order by msg.conversation_id, msg.seq
    for no key update of msg for key share of m`.execute(tx);
  return new Set(result.rows.map((r) => targetKey({ conversationId: r.conversation_id, seq: r.seq, userId: r.user_id })));
}

/** Inserts the reactions that are not there yet; returns those it inserted. */
export async function insertReactions(tx: Transaction<Database>, keys: readonly ReactionKey[]): Promise<ReactionKey[]> {
  if (keys.length === 0) return [];
  const result = await sql<{ conversation_id: string; seq: string; emoji: string; user_id: string }>`
    insert into message_reactions (conversation_id, seq, emoji, user_id)
    select * from unnest(${keys.map((k) => k.conversationId)}::uuid[], ${keys.map((k) => k.seq)}::int8[],
                         ${keys.map((k) => k.emoji)}::text[], ${keys.map((k) => k.userId)}::text[])
    on conflict (conversation_id, seq, emoji, user_id) do nothing
    returning conversation_id, seq, emoji, user_id`.execute(tx);
  return result.rows.map(toKey);
}

/** Deletes the reactions that are there; returns those it deleted. */
export async function deleteReactions(tx: Transaction<Database>, keys: readonly ReactionKey[]): Promise<ReactionKey[]> {
  if (keys.length === 0) return [];
  const result = await sql<{ conversation_id: string; seq: string; emoji: string; user_id: string }>`
    delete from message_reactions r
    using unnest(${keys.map((k) => k.conversationId)}::uuid[], ${keys.map((k) => k.seq)}::int8[],
                 ${keys.map((k) => k.emoji)}::text[], ${keys.map((k) => k.userId)}::text[]) as k(c, s, e, u)
    where r.conversation_id = k.c and r.seq = k.s and r.emoji = k.e and r.user_id = k.u
    returning r.conversation_id, r.seq, r.emoji, r.user_id`.execute(tx);
  return result.rows.map(toKey);
}

/**
 * Adds each net delta to its count, one upsert for all of them; returns the counts after it,
 * keyed by countKey. A zero delta just reads the count. The inserted value is clamped at zero
 * because PostgreSQL checks `count >= 0` on the proposed row even when it then updates; a
 * negative delta always finds its row, since it comes from reactions that were there.
 */
export async function applyCountDeltas(tx: Transaction<Database>, deltas: readonly CountDelta[]): Promise<Map<string, bigint>> {
  if (deltas.length === 0) return new Map();
  const result = await sql<{ conversation_id: string; seq: string; emoji: string; count: string }>`
    with d(c, s, e, delta) as (
      select * from unnest(${deltas.map((d) => d.conversationId)}::uuid[], ${deltas.map((d) => d.seq)}::int8[],
                           ${deltas.map((d) => d.emoji)}::text[], ${deltas.map((d) => String(d.delta))}::int8[]))
    insert into message_reaction_counts as rc (conversation_id, seq, emoji, count)
    select c, s, e, greatest(delta, 0) from d order by c, s, e
    on conflict (conversation_id, seq, emoji) do update
      set count = rc.count + (select d.delta from d where d.c = excluded.conversation_id and d.s = excluded.seq and d.e = excluded.emoji)
    returning conversation_id, seq, emoji, count`.execute(tx);
  return new Map(result.rows.map((r) => [countKey({ conversationId: r.conversation_id, seq: r.seq, emoji: r.emoji }), BigInt(r.count)]));
}

/**
 * For each viewer of a message: the message's reactions (count > 0, most used first, then by
 * emoji in code point order) and whether the viewer is among them. One query for a whole page
 * or batch; O(emojis) per message thanks to the maintained counts.
 */
export async function findReactionSummaries(db: Db, viewers: readonly ReactionTarget[]): Promise<ReactionSummaryRow[]> {
  if (viewers.length === 0) return [];
  const result = await sql<ReactionSummaryRow>`
    select k.c as conversation_id, k.s as seq, k.u as user_id, rc.emoji, rc.count,
      exists (select 1 from message_reactions r
        where r.conversation_id = k.c and r.seq = k.s and r.emoji = rc.emoji and r.user_id = k.u) as reacted_by_me
    from (select distinct * from unnest(${viewers.map((v) => v.conversationId)}::uuid[], ${viewers.map((v) => v.seq)}::int8[],
                                        ${viewers.map((v) => v.userId)}::text[])) as k(c, s, u)
    join message_reaction_counts rc on rc.conversation_id = k.c and rc.seq = k.s
    where rc.count > 0
    order by k.c, k.s, k.u, rc.count desc, rc.emoji collate "C"`.execute(db);
  return result.rows;
}

function toKey(r: { conversation_id: string; seq: string; emoji: string; user_id: string }): ReactionKey {
  return { conversationId: r.conversation_id, seq: r.seq, emoji: r.emoji, userId: r.user_id };
}

/** Up to `limit` of the user's reactions to messages (index message_reactions_by_user). */
export async function findReactionsBy(db: Db, userId: string, limit: number): Promise<ReactionKey[]> {
  const rows = await db
    .selectFrom("message_reactions")
    .select(["conversation_id", "seq", "emoji", "user_id"])
    .where("user_id", "=", userId)
    .orderBy("conversation_id")
    .orderBy("seq")
    .limit(limit)
    .execute();
  return rows.map(toKey);
}

/**
 * Locks the messages the reactions are on, as a reaction batch does (FOR NO KEY UPDATE, in
 * (conversation, seq) order), so the count changes that follow see no concurrent writer.
 * Unlike lockReactionTargets it asks nothing of membership: it takes back reactions of a user
 * who may have left.
 */
export async function lockReactedMessages(tx: Transaction<Database>, keys: readonly ReactionKey[]): Promise<void> {
  if (keys.length === 0) return;
  await sql`
    select 1 from messages msg
    join (select distinct * from unnest(${keys.map((k) => k.conversationId)}::uuid[], ${keys.map((k) => k.seq)}::int8[])) as k(c, s)
      on msg.conversation_id = k.c and msg.seq = k.s
    order by msg.conversation_id, msg.seq
    for no key update of msg`.execute(tx);
}
