/** Every SQL statement about messages. */
import { sql, type Compilable, type Expression, type Insertable, type Kysely, type RawBuilder, type Selectable, type Transaction } from "kysely";
import type { Database, MessagesTable } from "../db/schema.ts";
import type { ConversationEncryption } from "./encryption-rules.ts";
import type { RetentionCutoff } from "../retention/retention-policy.ts";
import { preparedSql } from "../db/prepared-statements.ts";

type Db = Kysely<Database> | Transaction<Database>;

export type MessageRow = Selectable<MessagesTable>;
export type NewMessageRow = Insertable<MessagesTable>;

/** A locked conversation: its kind, newest seq and encryption settings. */
export interface LockedConversation extends ConversationEncryption {
  type: number;
  lastSeq: bigint;
}

/** Locks the conversations (in id order, so concurrent batches never deadlock). */
export async function lockConversations(tx: Transaction<Database>, conversationIds: readonly string[]): Promise<Map<string, LockedConversation>> {
  const rows = await sql<{ id: string; type: number; last_seq: string; encrypted: boolean; blind_search: boolean; key_epoch: number }>`
    select id, type, last_seq, encrypted, blind_search, key_epoch from conversations where id = any(${[...conversationIds].sort()}::uuid[])
    order by id for update`.execute(tx);
  return new Map(
    rows.rows.map((r) => [r.id, { type: r.type, lastSeq: BigInt(r.last_seq), encrypted: r.encrypted, blindSearch: r.blind_search, keyEpoch: r.key_epoch }]),
  );
}

export interface IdempotencyKey {
  conversationId: string;
  senderId: string;
  clientMessageId: string;
}

/** What a send batch must know before it writes, read under the conversations' locks. */
export interface SendLookups {
  /** The role of each asked (conversation, user) pair that is a membership, keyed `${conversationId}/${userId}`. */
  roles: Map<string, number>;
  /** The asked DIRECT conversations whose two members have a block between them. */
  blockedDirect: Set<string>;
  /** Where messages already stored under the batch's idempotency keys are (retries). */
  stored: { conversation_id: string; seq: string }[];
}

/**
 * The batch's three lookups in one round trip: memberships of the senders and mentioned
 * users, blocks on DIRECT conversations, and idempotency keys already used.
 */
export async function findSendLookups(
  tx: Transaction<Database>,
  members: readonly { conversationId: string; userId: string }[],
  blocked: RawBuilder<{ conversation_id: string }>,
  keys: readonly IdempotencyKey[],
): Promise<SendLookups> {
  const rows = await sql<{ kind: "role" | "blocked" | "stored"; conversation_id: string; user_id: string | null; n: string | null }>`
    select 'role' as kind, m.conversation_id::text as conversation_id, m.user_id, m.role::int8 as n
      from conversation_members m
      join unnest(${members.map((p) => p.conversationId)}::uuid[], ${members.map((p) => p.userId)}::text[]) as k(c, u)
        on m.conversation_id = k.c and m.user_id = k.u
    union all
    select 'blocked', b.conversation_id::text, null, null from (${blocked}) b
    union all
    select 'stored', m.conversation_id::text, null, m.seq
      from messages m
      join unnest(${keys.map((k) => k.conversationId)}::uuid[], ${keys.map((k) => k.senderId)}::text[],
                  ${keys.map((k) => k.clientMessageId)}::text[]) as k(c, s, i)
        on m.conversation_id = k.c and m.sender_id = k.s and m.client_message_id = k.i`.execute(tx);
  const lookups: SendLookups = { roles: new Map(), blockedDirect: new Set(), stored: [] };
  for (const row of rows.rows) {
    if (row.kind === "role") lookups.roles.set(`${row.conversation_id}/${row.user_id}`, Number(row.n));
    else if (row.kind === "blocked") lookups.blockedDirect.add(row.conversation_id);
    else lookups.stored.push({ conversation_id: row.conversation_id, seq: row.n! });
  }
  return lookups;
}

/**
 * After a batch's insert: moves each conversation's last_seq (and last activity) and adds the
 * new messages to the other members' unread counters, in one statement. Runs under the
 * conversations' locks, which every other counter change also takes.
 */
export async function advanceConversations(
  tx: Transaction<Database>,
  lastSeqs: ReadonlyMap<string, bigint>,
  messages: readonly { conversation_id: string; seq: string }[],
): Promise<void> {
  const ids = [...lastSeqs.keys()];
  await sql`
    with moved as (
      update conversations c set last_seq = v.last_seq, last_activity_at = now()
      from unnest(${ids}::uuid[], ${ids.map((id) => lastSeqs.get(id)!.toString())}::int8[]) as v(id, last_seq)
      where c.id = v.id
    )
    update conversation_members m set
      unread_count = m.unread_count + d.unread,
      unread_mention_count = m.unread_mention_count + d.mentions
    from ${unreadByMember(messages)} d
    where m.conversation_id = d.conversation_id and m.user_id = d.user_id`.execute(tx);
}

/**
 * For each member who has not read some of these messages (and did not send them): how many of
 * them are unread for them, and how many of those mention them. What a send adds to the unread
 * counters and a delete takes away.
 */
export function unreadByMember(messages: readonly { conversation_id: string; seq: string }[]) {
  return sql`(
    select mm.conversation_id, mm.user_id, count(*) as unread,
      count(*) filter (where msg.mentions_everyone or mm.user_id = any(msg.mentioned_user_ids)) as mentions
    from unnest(${messages.map((r) => r.conversation_id)}::uuid[], ${messages.map((r) => r.seq)}::int8[]) as k(c, s)
    join messages msg on msg.conversation_id = k.c and msg.seq = k.s
    join conversation_members mm on mm.conversation_id = msg.conversation_id
      and mm.user_id <> msg.sender_id and mm.last_read_seq < msg.seq
    group by mm.conversation_id, mm.user_id)`;
}

export async function insertMessages(tx: Transaction<Database>, rows: readonly NewMessageRow[]): Promise<MessageRow[]> {
  return tx.insertInto("messages").values([...rows]).returningAll().execute();
}

/** What a read shows of the message a reply quotes. */
export interface ReplyPreviewColumns {
  reply_sender_id: string | null;
  reply_created_at: Date | null;
  reply_text: string | null;
  reply_encrypted: boolean | null;
  reply_deleted: boolean | null;
}

export type MessageWithReplyRow = MessageRow & ReplyPreviewColumns;

/** Longest preview (last message, reply quote, notification), in characters. */
export const PREVIEW_CHARS = 100;

/**
 * The columns a MessagePreview is made of, from the messages row aliased `alias`, named
 * `<prefix>_sender_id`, `_created_at`, `_text`, `_encrypted`, `_deleted` (for raw queries;
 * both names are constants of the caller, never input).
 */
export function previewColumns(alias: string, prefix: string) {
  const [a, p] = [sql.raw(alias), sql.raw(prefix)];
  return sql`${a}.sender_id as ${p}_sender_id, ${a}.created_at as ${p}_created_at,
    left(${a}.body_text, ${PREVIEW_CHARS}) as ${p}_text, (${a}.envelope_ciphertext is not null) as ${p}_encrypted,
    (${a}.deleted_at is not null) as ${p}_deleted`;
}

/**
 * What a read keeps of a conversation's history: messages created after a deadline (one
 * conversation's, computed by the caller), or after each message's own conversation's deadline
 * at a cutoff (reads across conversations), or everything (null).
 */
export type RetainedAfter = Date | RetentionCutoff | null;

/**
 * Messages joined with the message each one replies to, for reads. A message past retention
 * is not read; a reply quoting one has no preview, as after the sweeper deleted it.
 */
function selectWithReply(db: Db, retained: RetainedAfter) {
  const cutoff = retained !== null && !(retained instanceof Date) ? retained : null;
  const deadline = retained instanceof Date ? retained : null;
  const query = db
    .selectFrom("messages as m")
    // With a cutoff, the message's conversation row (alias "c") gives the retention columns.
    .$if(cutoff !== null, (qb) => qb.innerJoin("conversations as c", "c.id", "m.conversation_id"))
    .leftJoin("messages as r", (join) => {
      const same = join.onRef("r.conversation_id", "=", "m.conversation_id").onRef("r.seq", "=", "m.reply_to_seq");
      if (deadline) return same.on("r.created_at", ">", deadline);
      if (cutoff) return same.on(cutoff.retainedSql("r.created_at", "c"));
      return same;
    })
    .selectAll("m")
    .select([
      "r.sender_id as reply_sender_id",
      "r.created_at as reply_created_at",
      sql<string | null>`left(r.body_text, ${PREVIEW_CHARS})`.as("reply_text"),
      sql<boolean | null>`r.envelope_ciphertext is not null`.as("reply_encrypted"),
      sql<boolean | null>`r.deleted_at is not null`.as("reply_deleted"),
    ]);
  if (deadline) return query.where("m.created_at", ">", deadline);
  if (cutoff) return query.where(cutoff.retainedSql("m.created_at", "c"));
  return query;
}

/** One message (with its reply preview), unless it is past the deadline. */
export async function findMessage(db: Db, conversationId: string, seq: bigint, retained: Date | null = null): Promise<MessageWithReplyRow | undefined> {
  return selectWithReply(db, retained).where("m.conversation_id", "=", conversationId).where("m.seq", "=", seq.toString()).executeTakeFirst();
}

/**
 * The messages at these positions, with their reply previews (for a batch just inserted, a
 * retry, or search hits); with a cutoff, only those still retained in their conversations.
 */
export async function findMessagesWithReply(db: Db, at: readonly { conversation_id: string; seq: string }[], retained: RetentionCutoff | null = null): Promise<MessageWithReplyRow[]> {
  if (at.length === 0) return [];
  return selectWithReply(db, retained)
    .where(sql<boolean>`(m.conversation_id, m.seq) in (select * from unnest(${at.map((r) => r.conversation_id)}::uuid[], ${at.map((r) => r.seq)}::int8[]))`)
    .execute();
}

/** A page of history: seq below `from` descending, or above it ascending; nothing past retention. */
function pageQuery(db: Db, conversationId: string, direction: "backward" | "forward", from: bigint | null, limit: number, retained: RetainedAfter) {
  let query = selectWithReply(db, retained).where("m.conversation_id", "=", conversationId);
  if (from !== null) query = query.where("m.seq", direction === "backward" ? "<" : ">", from.toString());
  return query.orderBy("m.seq", direction === "backward" ? "desc" : "asc").limit(limit);
}

/**
 * A message as a member reads it: the row with its reply preview, and its reactions as the
 * reader sees them ([emoji, count, reacted by the reader], most used first, then by emoji in
 * byte order; null for none).
 */
export type MemberReadRow = MessageWithReplyRow & { reactions: [emoji: string, count: string, reactedByMe: boolean][] | null };

/**
 * Reads as a member: null when the user is not a member of the conversation (the caller
 * answers NOT_FOUND), else what the read finds that is still retained at the cutoff (each
 * conversation's deadline is worked out in SQL by the one retention rule), with reactions.
 * The membership check, the deadline, the read and the reactions are one statement: they
 * were three round trips, and every ListMessages and GetMessage paid for all of them.
 */
export async function listMessagesAsMember(
  db: Db,
  userId: string,
  conversationId: string,
  direction: "backward" | "forward",
  from: bigint | null,
  limit: number,
  cutoff: RetentionCutoff,
): Promise<MemberReadRow[] | null> {
  const page = pageQuery(db, conversationId, direction, from, limit, cutoff);
  return asMember(db, userId, conversationId, page, sql.raw(direction === "backward" ? "desc" : "asc"));
}

/** One message as a member reads it: null for a non-member, [] when there is no such retained message. */
export async function findMessageAsMember(db: Db, userId: string, conversationId: string, seq: bigint, cutoff: RetentionCutoff): Promise<MemberReadRow[] | null> {
  const one = selectWithReply(db, cutoff).where("m.conversation_id", "=", conversationId).where("m.seq", "=", seq.toString());
  return asMember(db, userId, conversationId, one, sql.raw("asc"));
}

async function asMember(db: Db, userId: string, conversationId: string, read: Compilable & Expression<unknown>, order: RawBuilder<unknown>): Promise<MemberReadRow[] | null> {
  // One row per message read, or one row of nulls for a member who reads nothing; no row for a
  // non-member. Reactions as reaction-repository's findReactionSummaries reads them.
  const result = await sql<MemberReadRow>`${preparedSql}
    select page.*,
      (select json_agg(json_build_array(rc.emoji, rc.count::text,
          exists (select 1 from message_reactions mr
            where mr.conversation_id = rc.conversation_id and mr.seq = rc.seq and mr.emoji = rc.emoji and mr.user_id = ${userId}))
          order by rc.count desc, rc.emoji collate "C")
        from message_reaction_counts rc
        where rc.conversation_id = page.conversation_id and rc.seq = page.seq and rc.count > 0) as reactions
    from conversation_members me
    left join lateral (${read}) page on true
    where me.conversation_id = ${conversationId} and me.user_id = ${userId}
    order by page.seq ${order}`.execute(db);
  if (result.rows.length === 0) return null;
  return result.rows[0]!.seq === null ? [] : result.rows;
}

/** Locks one message for an edit or a delete. */
export async function lockMessage(tx: Transaction<Database>, conversationId: string, seq: bigint): Promise<MessageRow | undefined> {
  return tx
    .selectFrom("messages")
    .selectAll()
    .where("conversation_id", "=", conversationId)
    .where("seq", "=", seq.toString())
    .forUpdate()
    .executeTakeFirst();
}
