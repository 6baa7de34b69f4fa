/**
 * Every SQL statement about conversations and their members. Functions take the Kysely
 * handle or a transaction first, so a service can combine several in one transaction.
 */
import { sql, type Kysely, type RawBuilder, type Transaction } from "kysely";
import type { Database } from "../db/schema.ts";
import { previewColumns } from "../messages/message-repository.ts";
import type { ConversationEncryption } from "../messages/encryption-rules.ts";
import type { ConversationRetention, RetentionCutoff } from "../retention/retention-policy.ts";
import { preparedSql } from "../db/prepared-statements.ts";

type Db = Kysely<Database> | Transaction<Database>;

export const ConversationKind = { DIRECT: 1, GROUP: 2 } as const;
export const Role = { MEMBER: 1, ADMIN: 2 } as const;

/** A conversation as one member sees it, with what ListConversations shows. */
export interface ConversationViewRow {
  id: string;
  type: number;
  name: string;
  description: string;
  created_by: string;
  created_at: Date;
  last_activity_at: Date;
  /** last_activity_at in microseconds since the epoch, exact, for keyset cursors. */
  activity_us: string;
  last_seq: string;
  member_count: number;
  encrypted: boolean;
  blind_search: boolean;
  key_epoch: number;
  /** The conversation's own retention in seconds, and the one that applies (with the deployment's). */
  message_retention_seconds: string | null;
  effective_retention_seconds: string | null;
  my_role: number;
  my_last_read_seq: string;
  unread_count: string;
  unread_mention_count: string;
  direct_peer_id: string | null;
  lm_seq: string | null;
  lm_sender_id: string | null;
  lm_created_at: Date | null;
  lm_text: string | null;
  lm_encrypted: boolean | null;
  lm_deleted: boolean | null;
}

/**
 * The user's conversations that pass `where`, in `orderAndLimit` order, as ListConversations
 * shows them. The page is chosen first, from the membership and conversation rows alone; only
 * its rows then look up their last message and DIRECT peer. The unread counters are kept
 * exact by every write that changes them (see migrations/0003_message_lifecycle.sql), so a
 * page costs O(page) whatever the history holds. A last message past retention (at the
 * cutoff's clock) is no preview.
 */
function conversationViews(userId: string, where: RawBuilder<unknown>, orderAndLimit: RawBuilder<unknown>, cutoff: RetentionCutoff) {
  return sql<ConversationViewRow>`${preparedSql}
    select v.*,
      least(v.message_retention_seconds, ${cutoff.policy.deploymentSeconds}::int8) as effective_retention_seconds,
      (select p.user_id from conversation_members p
        where v.type = ${ConversationKind.DIRECT} and p.conversation_id = v.id and p.user_id <> ${userId}
        limit 1) as direct_peer_id,
      lm.seq as lm_seq, ${previewColumns("lm", "lm")}
    from (
      select c.id, c.type, c.name, c.description, c.created_by, c.created_at, c.last_activity_at,
        (extract(epoch from c.last_activity_at) * 1000000)::int8 as activity_us,
        c.last_seq, c.member_count, c.encrypted, c.blind_search, c.key_epoch, m.role as my_role, m.last_read_seq as my_last_read_seq,
        m.unread_count, m.unread_mention_count, c.message_retention_seconds, c.retention_floor
      from conversation_members m
      join conversations c on c.id = m.conversation_id
      where m.user_id = ${userId} ${where}
      ${orderAndLimit}
    ) v
    left join messages lm on lm.conversation_id = v.id and lm.seq = v.last_seq and ${cutoff.retainedSql("lm.created_at", "v")}
    ${orderAndLimit}`;
}

/** The conversation if the user is a member of it. */
export async function findConversationView(db: Db, conversationId: string, userId: string, cutoff: RetentionCutoff): Promise<ConversationViewRow | undefined> {
  const result = await conversationViews(userId, sql`and c.id = ${conversationId}`, sql``, cutoff).execute(db);
  return result.rows[0];
}

export interface ActivityCursor {
  activityUs: string;
  id: string;
}

/** The user's conversations, most recent activity first, after the cursor. */
export async function listConversationViews(db: Db, userId: string, limit: number, after: ActivityCursor | null, cutoff: RetentionCutoff): Promise<ConversationViewRow[]> {
  const page = after
    ? sql`and ((extract(epoch from c.last_activity_at) * 1000000)::int8, c.id) < (${after.activityUs}::int8, ${after.id}::uuid)`
    : sql``;
  const result = await conversationViews(userId, page, sql`order by activity_us desc, id desc limit ${limit}`, cutoff).execute(db);
  return result.rows;
}

/** The DIRECT conversation (plain or encrypted) between two users, if there is one. */
export async function findDirectConversationId(db: Db, userA: string, userB: string, encrypted: boolean): Promise<string | undefined> {
  const [low, high] = userA < userB ? [userA, userB] : [userB, userA];
  const row = await db
    .selectFrom("direct_pairs")
    .select("conversation_id")
    .where("user_low", "=", low)
    .where("user_high", "=", high)
    .where("encrypted", "=", encrypted)
    .executeTakeFirst();
  return row?.conversation_id;
}

/** Releases a DIRECT conversation's pair (its member left for good: account erasure). */
export async function releaseDirectPair(tx: Db, conversationId: string): Promise<void> {
  await tx.deleteFrom("direct_pairs").where("conversation_id", "=", conversationId).execute();
}

/** Claims the pair for a conversation; false when another conversation of that kind already has it. */
export async function claimDirectPair(tx: Db, userA: string, userB: string, conversationId: string, encrypted: boolean): Promise<boolean> {
  const [low, high] = userA < userB ? [userA, userB] : [userB, userA];
  const row = await tx
    .insertInto("direct_pairs")
    .values({ user_low: low, user_high: high, conversation_id: conversationId, encrypted })
    .onConflict((oc) => oc.columns(["user_low", "user_high", "encrypted"]).doNothing())
    .returning("conversation_id")
    .executeTakeFirst();
  return row !== undefined;
}

export interface NewConversation {
  id: string;
  type: number;
  name: string;
  description: string;
  createdBy: string;
  members: { userId: string; role: number }[];
  /** End-to-end encrypted (fixed for good); plain when left out. */
  encrypted?: boolean;
  blindSearch?: boolean;
}

export async function insertConversation(tx: Db, conversation: NewConversation): Promise<void> {
  await tx
    .insertInto("conversations")
    .values({
      id: conversation.id,
      type: conversation.type,
      name: conversation.name,
      description: conversation.description,
      created_by: conversation.createdBy,
      member_count: conversation.members.length,
      encrypted: conversation.encrypted ?? false,
      blind_search: conversation.blindSearch ?? false,
      key_epoch: conversation.encrypted ? 1 : 0,
    })
    .execute();
  await tx
    .insertInto("conversation_members")
    .values(conversation.members.map((m) => ({ conversation_id: conversation.id, user_id: m.userId, role: m.role })))
    .execute();
}

/** Locks the conversation row; membership changes take it so they serialize with sends. */
export async function lockConversation(tx: Transaction<Database>, conversationId: string) {
  return tx
    .selectFrom("conversations")
    .select(["id", "type", "member_count", "last_seq", "encrypted", "message_retention_seconds", "retention_floor"])
    .where("id", "=", conversationId)
    .forUpdate()
    .executeTakeFirst();
}

/**
 * Moves an encrypted conversation to its next key epoch (the caller holds its lock) and
 * returns the new epoch: encrypted sends must then carry it, so every device replaces its
 * keys before it sends again.
 */
export async function advanceKeyEpoch(tx: Db, conversationId: string): Promise<number> {
  const row = await tx
    .updateTable("conversations")
    .set((eb) => ({ key_epoch: eb("key_epoch", "+", 1) }))
    .where("id", "=", conversationId)
    .where("encrypted", "=", true)
    .returning("key_epoch")
    .executeTakeFirstOrThrow();
  return row.key_epoch;
}

/**
 * Moves every encrypted conversation of the user to its next key epoch, locking them in id
 * order (as sends do, so the two never deadlock); returns each with its new epoch.
 */
export async function advanceKeyEpochsOf(tx: Db, userId: string): Promise<Array<{ id: string; key_epoch: number }>> {
  const result = await sql<{ id: string; key_epoch: number }>`
    with locked as (
      select c.id from conversations c
      where c.encrypted and c.id in (select m.conversation_id from conversation_members m where m.user_id = ${userId})
      order by c.id for update
    )
    update conversations c set key_epoch = c.key_epoch + 1
    from locked where c.id = locked.id
    returning c.id, c.key_epoch`.execute(tx);
  return result.rows;
}

/** The user's encrypted conversations and their current key epochs. */
export async function findEncryptedConversationsOf(db: Db, userId: string): Promise<Array<{ id: string; key_epoch: number }>> {
  return db
    .selectFrom("conversation_members as m")
    .innerJoin("conversations as c", "c.id", "m.conversation_id")
    .select(["c.id", "c.key_epoch"])
    .where("m.user_id", "=", userId)
    .where("c.encrypted", "=", true)
    .execute();
}

/** The user's role in the conversation, or undefined when they are not a member. */
export async function findRole(db: Db, conversationId: string, userId: string): Promise<number | undefined> {
  const row = await db
    .selectFrom("conversation_members")
    .select("role")
    .where("conversation_id", "=", conversationId)
    .where("user_id", "=", userId)
    .executeTakeFirst();
  return row?.role;
}

/** Which of these users are members already. */
export async function findMemberIds(db: Db, conversationId: string, userIds: readonly string[]): Promise<Set<string>> {
  if (userIds.length === 0) return new Set();
  const rows = await db
    .selectFrom("conversation_members")
    .select("user_id")
    .where("conversation_id", "=", conversationId)
    .where("user_id", "in", userIds)
    .execute();
  return new Set(rows.map((r) => r.user_id));
}

/**
 * Adds members who start with everything already sent counted as read (history from before
 * they joined is never unread), so their counters start at zero. Runs under the conversation's
 * lock, so no send slips in between.
 */
export async function insertMembers(tx: Db, conversationId: string, userIds: readonly string[], lastSeq: string) {
  const rows = await tx
    .insertInto("conversation_members")
    .values(userIds.map((userId) => ({ conversation_id: conversationId, user_id: userId, role: Role.MEMBER, last_read_seq: lastSeq })))
    .returningAll()
    .execute();
  await adjustMemberCount(tx, conversationId, rows.length);
  return rows;
}

export async function deleteMember(tx: Db, conversationId: string, userId: string): Promise<boolean> {
  const result = await tx
    .deleteFrom("conversation_members")
    .where("conversation_id", "=", conversationId)
    .where("user_id", "=", userId)
    .executeTakeFirst();
  const removed = result.numDeletedRows > 0n;
  if (removed) await adjustMemberCount(tx, conversationId, -1);
  return removed;
}

async function adjustMemberCount(tx: Db, conversationId: string, delta: number): Promise<void> {
  await tx
    .updateTable("conversations")
    .set((eb) => ({ member_count: eb("member_count", "+", delta) }))
    .where("id", "=", conversationId)
    .execute();
}

export async function countAdmins(tx: Db, conversationId: string): Promise<number> {
  const row = await tx
    .selectFrom("conversation_members")
    .select((eb) => eb.fn.countAll<string>().as("n"))
    .where("conversation_id", "=", conversationId)
    .where("role", "=", Role.ADMIN)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** Makes the longest-standing remaining member an admin (used when the last admin leaves); returns who. */
export async function promoteEarliestMember(tx: Db, conversationId: string): Promise<string | undefined> {
  const result = await sql<{ user_id: string }>`
    update conversation_members set role = ${Role.ADMIN}
    where conversation_id = ${conversationId} and user_id = (
      select user_id from conversation_members where conversation_id = ${conversationId}
      order by joined_at, user_id limit 1)
    returning user_id`.execute(tx);
  return result.rows[0]?.user_id;
}

export async function updateMemberRole(tx: Db, conversationId: string, userId: string, role: number) {
  return tx
    .updateTable("conversation_members")
    .set({ role })
    .where("conversation_id", "=", conversationId)
    .where("user_id", "=", userId)
    .returningAll()
    .executeTakeFirst();
}

export interface MemberRow {
  conversation_id: string;
  user_id: string;
  role: number;
  joined_at: Date;
  last_read_seq: string;
}

export interface JoinCursor {
  joinedUs: string;
  userId: string;
}

/** Members in join order, with the exact join time in microseconds for the cursor. */
export async function listMembers(db: Db, conversationId: string, limit: number, after: JoinCursor | null) {
  const page = after
    ? sql`and ((extract(epoch from joined_at) * 1000000)::int8, user_id) > (${after.joinedUs}::int8, ${after.userId})`
    : sql``;
  const result = await sql<MemberRow & { joined_us: string }>`
    select conversation_id, user_id, role, joined_at, last_read_seq,
      (extract(epoch from joined_at) * 1000000)::int8 as joined_us
    from conversation_members where conversation_id = ${conversationId} ${page}
    order by joined_us, user_id limit ${limit}`.execute(db);
  return result.rows;
}

export async function updateConversationDetails(tx: Db, conversationId: string, change: { name?: string; description?: string }) {
  await tx
    .updateTable("conversations")
    .set({
      ...(change.name !== undefined && { name: change.name }),
      ...(change.description !== undefined && { description: change.description }),
    })
    .where("id", "=", conversationId)
    .execute();
}

/** A member's read position and unread counters. */
export interface ReadCounters {
  last_read_seq: string;
  unread_count: string;
  unread_mention_count: string;
}

/**
 * Moves the read position forward to seq and recomputes the member's counters from what
 * remains unread (bounded by the unread messages themselves); undefined if it was already there
 * or beyond. The caller holds the conversation's lock (shared), so no send, delete or join
 * changes the counters between the count and the update.
 */
export async function advanceReadPosition(tx: Transaction<Database>, conversationId: string, userId: string, seq: bigint): Promise<ReadCounters | undefined> {
  const result = await sql<ReadCounters>`
    update conversation_members m set last_read_seq = ${seq.toString()}, read_at = now(),
      unread_count = u.unread, unread_mention_count = u.mentions
    from (
      select count(*) as unread,
        count(*) filter (where x.mentions_everyone or ${userId} = any(x.mentioned_user_ids)) as mentions
      from messages x
      where x.conversation_id = ${conversationId} and x.seq > ${seq.toString()}
        and x.sender_id <> ${userId} and x.deleted_at is null
    ) u
    where m.conversation_id = ${conversationId} and m.user_id = ${userId} and m.last_read_seq < ${seq.toString()}
    returning m.last_read_seq, m.unread_count, m.unread_mention_count`.execute(tx);
  return result.rows[0];
}

/** The conversation's encryption settings, if the user is a member of it. */
export async function findMemberConversationEncryption(db: Db, conversationId: string, userId: string) {
  return db
    .selectFrom("conversation_members as m")
    .innerJoin("conversations as c", "c.id", "m.conversation_id")
    .select(["c.encrypted", "c.blind_search", "c.key_epoch"])
    .where("m.conversation_id", "=", conversationId)
    .where("m.user_id", "=", userId)
    .executeTakeFirst();
}

/**
 * Takes the conversation's lock shared (concurrent reads proceed; sends, deletes, joins and
 * removals, which move the key epoch on, wait) and returns its encryption and retention settings
 * as they stand under it; undefined when there is no such conversation.
 */
export async function lockConversationShared(tx: Transaction<Database>, conversationId: string): Promise<(ConversationEncryption & ConversationRetention) | undefined> {
  const row = await tx
    .selectFrom("conversations")
    .select(["encrypted", "blind_search", "key_epoch", "message_retention_seconds", "retention_floor"])
    .where("id", "=", conversationId)
    .forShare()
    .executeTakeFirst();
  return (
    row && {
      encrypted: row.encrypted,
      blindSearch: row.blind_search,
      keyEpoch: row.key_epoch,
      message_retention_seconds: row.message_retention_seconds,
      retention_floor: row.retention_floor,
    }
  );
}

export async function findReadCounters(db: Db, conversationId: string, userId: string): Promise<ReadCounters | undefined> {
  return db
    .selectFrom("conversation_members")
    .select(["last_read_seq", "unread_count", "unread_mention_count"])
    .where("conversation_id", "=", conversationId)
    .where("user_id", "=", userId)
    .executeTakeFirst();
}

/** Every member's read position, in join order (groups have at most a few hundred members). */
export async function listReadPositions(db: Db, conversationId: string) {
  return db
    .selectFrom("conversation_members")
    .select(["user_id", "last_read_seq", "read_at"])
    .where("conversation_id", "=", conversationId)
    .orderBy("joined_at")
    .orderBy("user_id")
    .execute();
}

export async function findConversationDetails(db: Db, conversationId: string) {
  return db.selectFrom("conversations").select(["name", "description", "message_retention_seconds"]).where("id", "=", conversationId).executeTakeFirstOrThrow();
}

/**
 * Sets (or, with null, clears) the conversation's own retention. The floor moves up to the
 * deadline the conversation had until now, so whatever had passed retention stays gone however
 * the retention changes. The caller holds the conversation's lock.
 */
export async function setMessageRetention(tx: Transaction<Database>, conversationId: string, seconds: number | null, cutoff: RetentionCutoff): Promise<void> {
  await sql`
    update conversations set message_retention_seconds = ${seconds}::int8, retention_floor = ${cutoff.deadlineSql("conversations")}
    where id = ${conversationId}`.execute(tx);
}

/** The user's role in the conversation with its kind and retention, or undefined when they are not a member. */
export async function findMemberRetention(
  db: Db,
  conversationId: string,
  userId: string,
): Promise<({ role: number; type: number } & ConversationRetention) | undefined> {
  return db
    .selectFrom("conversation_members as m")
    .innerJoin("conversations as c", "c.id", "m.conversation_id")
    .select(["m.role", "c.type", "c.message_retention_seconds", "c.retention_floor"])
    .where("m.conversation_id", "=", conversationId)
    .where("m.user_id", "=", userId)
    .executeTakeFirst();
}

/** The conversations the user is a member of (a feed's and a presence change's audience). */
export async function findConversationIdsOf(db: Kysely<Database>, userId: string): Promise<string[]> {
  const rows = await db.selectFrom("conversation_members").select("conversation_id").where("user_id", "=", userId).execute();
  return rows.map((row) => row.conversation_id);
}
