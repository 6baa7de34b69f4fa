/**
 * Blind-index tokens of encrypted messages, kept in PostgreSQL in every search mode: a blind
 * query is always within one conversation and key epoch, which the primary key leads with, so
 * it is an index lookup on the conversation's shard. The server cannot tell which word a token
 * stands for; it only matches equal bytes.
 */
import { sql, type Kysely, type Transaction } from "kysely";
import type { Database } from "../db/schema.ts";
import type { RetentionCutoff } from "../retention/retention-policy.ts";

type Db = Kysely<Database> | Transaction<Database>;

/** The tokens of one stored message. */
export interface MessageTokens {
  conversationId: string;
  seq: string;
  keyEpoch: number;
  tokens: readonly Uint8Array[];
}

export async function insertBlindTokens(tx: Db, messages: readonly MessageTokens[]): Promise<void> {
  const rows = messages.flatMap((m) => m.tokens.map((token) => ({ conversation_id: m.conversationId, key_epoch: m.keyEpoch, token, seq: m.seq })));
  if (rows.length > 0) await tx.insertInto("message_blind_tokens").values(rows).execute();
}

/** Drops a message's tokens (on delete, and before an edit writes the new version's). */
export async function deleteBlindTokens(tx: Db, conversationId: string, seq: string): Promise<void> {
  await tx.deleteFrom("message_blind_tokens").where("conversation_id", "=", conversationId).where("seq", "=", seq).execute();
}

/** One conversation and epoch's tokens, all of which a message must carry. */
export interface BlindMatch {
  conversationId: string;
  keyEpoch: number;
  tokens: readonly Uint8Array[];
}

/** Filters and the page position, as plain search takes them. */
export interface BlindSearchFilter {
  senderId: string | null;
  createdFromMs: number | null;
  createdBeforeMs: number | null;
  /** The last hit of the previous page: (created_at in µs, conversation id, seq). */
  after: { createdUs: string; conversationId: string; seq: string } | null;
  limit: number;
}

export interface BlindHitRow {
  conversation_id: string;
  seq: string;
  created_us: string;
}

/**
 * Messages (not deleted, not past retention at the cutoff) that carry all tokens of one of the
 * matches, newest first. Each match is answered from the token index; the filters and the
 * order apply to what they found.
 */
export async function findBlindMatches(db: Db, matches: readonly BlindMatch[], filter: BlindSearchFilter, cutoff: RetentionCutoff): Promise<BlindHitRow[]> {
  const found = sql.join(
    matches.map(
      (m) => sql`(select conversation_id, seq from message_blind_tokens
        where conversation_id = ${m.conversationId}::uuid and key_epoch = ${m.keyEpoch} and token = any(${[...m.tokens]}::bytea[])
        group by conversation_id, seq having count(*) = ${m.tokens.length})`,
    ),
    sql` union all `,
  );
  const after = filter.after
    ? sql`and ((extract(epoch from x.created_at) * 1000000)::int8, x.conversation_id, x.seq) < (${filter.after.createdUs}::int8, ${filter.after.conversationId}::uuid, ${filter.after.seq}::int8)`
    : sql``;
  const result = await sql<BlindHitRow>`
    select x.conversation_id, x.seq, (extract(epoch from x.created_at) * 1000000)::int8 as created_us
    from (${found}) f
    join messages x on x.conversation_id = f.conversation_id and x.seq = f.seq
    join conversations c on c.id = x.conversation_id
    where x.deleted_at is null and ${cutoff.retainedSql("x.created_at", "c")}
      ${filter.senderId === null ? sql`` : sql`and x.sender_id = ${filter.senderId}`}
      ${filter.createdFromMs === null ? sql`` : sql`and x.created_at >= to_timestamp(${filter.createdFromMs / 1000})`}
      ${filter.createdBeforeMs === null ? sql`` : sql`and x.created_at < to_timestamp(${filter.createdBeforeMs / 1000})`}
      ${after}
    order by created_us desc, x.conversation_id desc, x.seq desc
    limit ${filter.limit}`.execute(db);
  return result.rows;
}
