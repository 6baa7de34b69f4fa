/** Every SQL statement about notifications and notification settings. */
import { sql, type Kysely, type Selectable, type Transaction } from "kysely";
import type { Database, NotificationsTable } from "../db/schema.ts";
import { previewColumns } from "../messages/message-repository.ts";
import type { RetentionCutoff } from "../retention/retention-policy.ts";

type Db = Kysely<Database> | Transaction<Database>;

export const Kind = { MENTION: 1, REPLY: 2, ADDED: 3 } as const;
export const Level = { ALL: 1, MENTIONS_ONLY: 2, NONE: 3 } as const;

export type NotificationRow = Selectable<NotificationsTable>;

/**
 * Something that may notify someone, derived from one event: a mention of a user, a mention of
 * everyone (recipients: the members), a reply (recipient: the quoted message's sender), or a
 * user added to a conversation.
 */
export interface Intent {
  eventId: string;
  conversationId: string;
  actorId: string;
  /** The message's seq; 0 for ADDED. */
  messageSeq: bigint;
  what: "mention" | "everyone" | "reply" | "added";
  /** The recipient for mention and added. */
  userId: string | null;
  /** The quoted message for reply. */
  replyToSeq: bigint | null;
}

/**
 * Turns intents into notification rows, set-based, in one statement: resolves recipients,
 * keeps one notification per (event, user) (a mention outranks a reply), drops the actor,
 * non-members, deleted messages and what each recipient's settings exclude, and decides per
 * row whether it is pushed (not while muted). Rows that exist already (a redelivered event)
 * are left alone; returns only the rows this call inserted.
 */
export async function insertNotifications(tx: Transaction<Database>, intents: readonly Intent[]): Promise<NotificationRow[]> {
  if (intents.length === 0) return [];
  const column = <T>(pick: (i: Intent) => T) => intents.map(pick);
  const result = await sql<NotificationRow>`
    with intent as (
      select * from unnest(
        ${column((i) => i.eventId)}::uuid[], ${column((i) => i.conversationId)}::uuid[], ${column((i) => i.actorId)}::text[],
        ${column((i) => i.messageSeq.toString())}::int8[], ${column((i) => i.what)}::text[], ${column((i) => i.userId)}::text[],
        ${column((i) => i.replyToSeq?.toString() ?? null)}::int8[]
      ) with ordinality as t(event_id, conversation_id, actor_id, message_seq, what, user_id, reply_to_seq, ord)
    ),
    candidate as (
      select i.ord, i.event_id, i.conversation_id, i.actor_id, i.message_seq, i.user_id,
        case i.what when 'added' then ${Kind.ADDED}::int2 else ${Kind.MENTION}::int2 end as kind, false as via_everyone
      from intent i where i.what in ('mention', 'added')
      union all
      select i.ord, i.event_id, i.conversation_id, i.actor_id, i.message_seq, m.user_id, ${Kind.MENTION}::int2, true
      from intent i join conversation_members m on m.conversation_id = i.conversation_id where i.what = 'everyone'
      union all
      select i.ord, i.event_id, i.conversation_id, i.actor_id, i.message_seq, r.sender_id, ${Kind.REPLY}::int2, false
      from intent i join messages r on r.conversation_id = i.conversation_id and r.seq = i.reply_to_seq where i.what = 'reply'
    ),
    best as (
      select distinct on (c.event_id, c.user_id) c.* from candidate c
      where c.user_id <> c.actor_id
      order by c.event_id, c.user_id, c.kind, c.via_everyone
    )
    insert into notifications (id, user_id, source_event_id, kind, conversation_id, actor_id, message_seq, via_everyone, push, created_at)
    select gen_random_uuid(), b.user_id, b.event_id, b.kind, b.conversation_id, b.actor_id, b.message_seq, b.via_everyone,
      (s.muted_until is null or s.muted_until <= now()),
      -- One batch's notifications would tie on now() and list in random id order; a microsecond
      -- per place in the batch (which follows each conversation's log order) keeps them in the
      -- order their events happened.
      now() + b.ord * interval '1 microsecond'
    from best b
    join conversation_members cm on cm.conversation_id = b.conversation_id and cm.user_id = b.user_id
    left join messages msg on b.message_seq > 0 and msg.conversation_id = b.conversation_id and msg.seq = b.message_seq
    left join notification_settings s on s.user_id = b.user_id and s.conversation_id = b.conversation_id
    where (b.message_seq = 0 or msg.deleted_at is null)
      and (coalesce(s.level, ${Level.ALL}) = ${Level.ALL} or (s.level = ${Level.MENTIONS_ONLY} and b.kind = ${Kind.MENTION}))
    on conflict (user_id, source_event_id) do nothing
    returning *`.execute(tx);
  return result.rows;
}

/** The notifications of these events that should be pushed and are not known to be (yet). */
export async function findUnpushed(db: Db, eventIds: readonly string[]): Promise<NotificationRow[]> {
  if (eventIds.length === 0) return [];
  return db.selectFrom("notifications").selectAll().where("source_event_id", "in", eventIds).where("push", "=", true).where("pushed_at", "is", null).execute();
}

export async function markPushed(db: Db, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  await db.updateTable("notifications").set({ pushed_at: new Date() }).where("id", "in", ids).execute();
}

export interface NotificationCursor {
  createdUs: string;
  id: string;
}

export type ListedNotificationRow = NotificationRow & {
  created_us: string;
  msg_sender_id: string | null;
  msg_created_at: Date | null;
  msg_text: string | null;
  msg_encrypted: boolean | null;
  msg_deleted: boolean | null;
};

/**
 * A user's notifications, newest first, with a preview of their message as it is now: none once
 * the message is past retention (at the cutoff), as once the sweeper deleted it.
 */
export async function listNotifications(db: Db, userId: string, unreadOnly: boolean, limit: number, after: NotificationCursor | null, cutoff: RetentionCutoff) {
  const page = after ? sql`and ((extract(epoch from n.created_at) * 1000000)::int8, n.id) < (${after.createdUs}::int8, ${after.id}::uuid)` : sql``;
  const unread = unreadOnly ? sql`and n.read_at is null` : sql``;
  const result = await sql<ListedNotificationRow>`
    select n.*, (extract(epoch from n.created_at) * 1000000)::int8 as created_us,
      ${previewColumns("msg", "msg")}
    from notifications n
    left join conversations c on n.message_seq > 0 and c.id = n.conversation_id
    left join messages msg on n.message_seq > 0 and msg.conversation_id = n.conversation_id and msg.seq = n.message_seq
      and ${cutoff.retainedSql("msg.created_at", "c")}
    where n.user_id = ${userId} ${unread} ${page}
    order by n.created_at desc, n.id desc limit ${limit}`.execute(db);
  return result.rows;
}

export async function countUnread(db: Db, userId: string): Promise<bigint> {
  const row = await db
    .selectFrom("notifications")
    .select((eb) => eb.fn.countAll<string>().as("n"))
    .where("user_id", "=", userId)
    .where("read_at", "is", null)
    .executeTakeFirstOrThrow();
  return BigInt(row.n);
}

/** Marks the user's notifications read (all, or those ids); returns how many changed. */
export async function markRead(db: Db, userId: string, ids: readonly string[] | "all"): Promise<bigint> {
  if (ids !== "all" && ids.length === 0) return 0n;
  let query = db.updateTable("notifications").set({ read_at: new Date() }).where("user_id", "=", userId).where("read_at", "is", null);
  if (ids !== "all") query = query.where("id", "in", ids);
  const result = await query.executeTakeFirst();
  return result.numUpdatedRows;
}

export async function findSettings(db: Db, userId: string, conversationId: string) {
  return db
    .selectFrom("notification_settings")
    .select(["level", "muted_until"])
    .where("user_id", "=", userId)
    .where("conversation_id", "=", conversationId)
    .executeTakeFirst();
}

export async function saveSettings(db: Db, userId: string, conversationId: string, level: number, mutedUntil: Date | null): Promise<void> {
  await db
    .insertInto("notification_settings")
    .values({ user_id: userId, conversation_id: conversationId, level, muted_until: mutedUntil })
    .onConflict((oc) => oc.columns(["user_id", "conversation_id"]).doUpdateSet({ level, muted_until: mutedUntil }))
    .execute();
}

/** Deletes up to `limit` of the user's notifications (account erasure); returns how many. */
export async function deleteSomeNotificationsOf(db: Db, userId: string, limit: number): Promise<number> {
  const result = await sql`
    delete from notifications where user_id = ${userId}
      and id in (select id from notifications where user_id = ${userId} limit ${limit})`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}

/** Deletes the user's notification settings (account erasure). */
export async function deleteSettingsOf(db: Db, userId: string): Promise<void> {
  await db.deleteFrom("notification_settings").where("user_id", "=", userId).execute();
}
