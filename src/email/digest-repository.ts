/**
 * The digest sender's SQL: claiming users who are due, reading what they missed, and recording
 * a digest. Times that travel through JavaScript (covered_until, the cutoff) are kept to whole
 * milliseconds in the database, so a Date read back compares exactly with the stored value.
 */
import { sql, type Kysely } from "kysely";
import type { Database } from "../db/schema.ts";
import type { RetentionCutoff } from "../retention/retention-policy.ts";
import { ConversationKind } from "../conversations/conversation-repository.ts";
import { Kind, Level } from "../notifications/notification-repository.ts";
import { Frequency } from "./digest-settings-repository.ts";

/** A user a node holds the lease of, with the window its digest covers: (coveredUntil, cutoff]. */
export interface ClaimedUser {
  user_id: string;
  email_address: string;
  frequency: number;
  covered_until: Date;
  cutoff: Date;
}

export interface ClaimOptions {
  /** Written into the claimed rows; only its holder may record or release them. */
  token: string;
  leaseMs: number;
  graceMs: number;
  hourlyPeriodMs: number;
  dailyPeriodMs: number;
  limit: number;
}

/**
 * Claims up to `limit` users who are due a digest (digests on; no lease held; the period since
 * the last digest over) and have something that may be missed: an unread mention notification,
 * or an unread DIRECT conversation with activity, after their coverage and older than the
 * grace. FOR UPDATE SKIP LOCKED makes concurrent claims on several nodes disjoint; the lease
 * keeps the rows theirs after this statement commits, while the email is sent.
 */
export async function claimDueUsers(db: Kysely<Database>, o: ClaimOptions): Promise<ClaimedUser[]> {
  const cutoff = sql`date_trunc('milliseconds', now() - ${o.graceMs}::int8 * interval '1 millisecond')`;
  const result = await sql<ClaimedUser>`
    with due as (
      -- A literal, not a parameter: it lets the planner use the partial index of enabled users.
      select d.user_id from email_digest_settings d
      where d.frequency <> ${sql.lit(Frequency.OFF)}
        and (d.lease_until is null or d.lease_until < now())
        and (d.last_sent_at is null or d.last_sent_at <= now()
          - (case d.frequency when ${Frequency.HOURLY} then ${o.hourlyPeriodMs}::int8 else ${o.dailyPeriodMs}::int8 end) * interval '1 millisecond')
        and d.covered_until < ${cutoff}
        and (exists (select 1 from notifications n
              where n.user_id = d.user_id and n.read_at is null and n.kind = ${Kind.MENTION}
                and n.created_at > d.covered_until and n.created_at <= ${cutoff})
          or exists (select 1 from conversation_members m join conversations c on c.id = m.conversation_id
              where m.user_id = d.user_id and c.type = ${ConversationKind.DIRECT} and m.unread_count > 0
                and c.last_activity_at > d.covered_until))
      order by d.last_sent_at nulls first, d.user_id
      limit ${o.limit}::int8
      for update of d skip locked
    )
    update email_digest_settings s
    set lease_until = now() + ${o.leaseMs}::int8 * interval '1 millisecond', lease_token = ${o.token}::text
    from due where s.user_id = due.user_id
    returning s.user_id, s.email_address, s.frequency, s.covered_until, ${cutoff} as cutoff`.execute(db);
  return result.rows.map((row) => ({ ...row, covered_until: new Date(row.covered_until), cutoff: new Date(row.cutoff) }));
}

/** One missed message, as a digest shows it. `text` is null for encrypted messages: it never leaves the database. */
export interface MissedItem {
  conversation_id: string;
  conversation_type: number;
  conversation_name: string;
  seq: string;
  mention: boolean;
  encrypted: boolean;
  text: string | null;
  sender_id: string;
  sender_name: string;
  created_at: Date;
}

/** Longest text of one message in a digest, in characters. */
const ITEM_TEXT_CHARS = 500;

/**
 * What the user missed in (coveredUntil, cutoff]: mention notifications still unread, and
 * messages from others in their DIRECT conversations, in both cases above their read position
 * now (so what they read in time is left out however they read it). Left out as well: deleted
 * messages and those past retention, conversations they left, set to NONE (or MENTIONS_ONLY, for
 * what is not a mention) or muted, and senders blocked either way. Oldest first, at most `limit`.
 */
export async function findMissed(
  db: Kysely<Database>,
  user: ClaimedUser,
  retention: RetentionCutoff,
  limit: number,
): Promise<MissedItem[]> {
  const { user_id: userId, covered_until: after, cutoff } = user;
  const result = await sql<MissedItem>`
    with missed as (
      select n.conversation_id, n.message_seq as seq, true as mention
      from notifications n
      where n.user_id = ${userId}::text and n.kind = ${Kind.MENTION} and n.read_at is null and n.message_seq > 0
        and n.created_at > ${after}::timestamptz and n.created_at <= ${cutoff}::timestamptz
      union all
      select m.conversation_id, msg.seq, false
      from conversation_members m
      join conversations dc on dc.id = m.conversation_id and dc.type = ${ConversationKind.DIRECT}
      join messages msg on msg.conversation_id = m.conversation_id and msg.seq > m.last_read_seq
      where m.user_id = ${userId}::text and msg.sender_id <> ${userId}::text
        and msg.created_at > ${after}::timestamptz and msg.created_at <= ${cutoff}::timestamptz
    ),
    one as (select conversation_id, seq, bool_or(mention) as mention from missed group by conversation_id, seq)
    select o.conversation_id, c.type as conversation_type,
      case when c.type = ${ConversationKind.DIRECT} then coalesce(nullif(su.display_name, ''), msg.sender_id) else c.name end as conversation_name,
      o.seq, o.mention, (c.encrypted or msg.envelope_ciphertext is not null) as encrypted,
      case when c.encrypted or msg.envelope_ciphertext is not null then null else left(coalesce(msg.body_text, ''), ${ITEM_TEXT_CHARS}::int4) end as text,
      msg.sender_id, coalesce(nullif(su.display_name, ''), msg.sender_id) as sender_name, msg.created_at
    from one o
    join conversations c on c.id = o.conversation_id
    join conversation_members cm on cm.conversation_id = o.conversation_id and cm.user_id = ${userId}::text and cm.last_read_seq < o.seq
    join messages msg on msg.conversation_id = o.conversation_id and msg.seq = o.seq
    left join users su on su.id = msg.sender_id
    left join notification_settings s on s.user_id = ${userId}::text and s.conversation_id = o.conversation_id
    where msg.deleted_at is null and msg.sender_id <> ${userId}::text
      and ${retention.retainedSql("msg.created_at", "c")}
      and coalesce(s.level, ${Level.ALL}) <> ${Level.NONE}
      and (coalesce(s.level, ${Level.ALL}) <> ${Level.MENTIONS_ONLY} or o.mention)
      and (s.muted_until is null or s.muted_until <= now())
      and not exists (select 1 from blocks b
        where (b.blocker_id = ${userId}::text and b.blocked_id = msg.sender_id) or (b.blocker_id = msg.sender_id and b.blocked_id = ${userId}::text))
    order by msg.created_at, o.conversation_id, o.seq
    limit ${limit}::int8`.execute(db);
  return result.rows.map((row) => ({ ...row, created_at: new Date(row.created_at) }));
}

/**
 * Records that the user's window up to `cutoff` is done (a digest went out when `sent`) and
 * releases the lease; false when the lease was no longer this claim's (nothing written).
 */
export async function recordDigest(db: Kysely<Database>, user: ClaimedUser, token: string, sent: boolean): Promise<boolean> {
  const result = await db
    .updateTable("email_digest_settings")
    .set((eb) => ({
      covered_until: user.cutoff,
      last_sent_at: sent ? sql<Date>`now()` : eb.ref("last_sent_at"),
      lease_until: null,
      lease_token: null,
    }))
    .where("user_id", "=", user.user_id)
    .where("lease_token", "=", token)
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

/** Gives claimed users back untouched (the node is stopping, or ran out of lease time). */
export async function releaseClaims(db: Kysely<Database>, userIds: readonly string[], token: string): Promise<void> {
  if (userIds.length === 0) return;
  await db
    .updateTable("email_digest_settings")
    .set({ lease_until: null, lease_token: null })
    .where("user_id", "in", userIds)
    .where("lease_token", "=", token)
    .execute();
}
