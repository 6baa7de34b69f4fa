/**
 * The event log: the outbox table behind the feed. appendEvents runs inside the transaction
 * that makes the change, so an event exists exactly when its change does.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { sql, type Kysely, type Transaction } from "kysely";
import { EventSchema, type Event } from "../../gen/parley/v1/event_pb.ts";
import type { Database } from "../db/schema.ts";
import { newId } from "../ids.ts";

type Db = Kysely<Database> | Transaction<Database>;

const SHARD = 0;

/** An event to record: where it goes and what it says. */
export interface NewEvent {
  /** The conversation whose members receive it (null for user-only events). */
  conversationId: string | null;
  /** A user who receives it even if not (or no longer) a member. */
  targetUserId?: string | null;
  actorId: string;
  kind: Event["kind"];
}

/** An event as committed: its log position plus the protobuf event (cursor not yet set). */
export interface StoredEvent {
  position: bigint;
  conversationId: string | null;
  targetUserId: string | null;
  event: Event;
  /** The event's protobuf encoding, as stored and as published (encoded once). */
  payload: Uint8Array;
}

/**
 * A stored event read back from its encoding, decoded only when something reads `event`: a
 * node receives every event of the cluster, and most concern none of its streams.
 */
export function storedEventFrom(position: bigint, conversationId: string | null, targetUserId: string | null, payload: Uint8Array): StoredEvent {
  let event: Event | undefined;
  return {
    position,
    conversationId,
    targetUserId,
    payload,
    get event() {
      return (event ??= fromBinary(EventSchema, payload));
    },
  };
}

/**
 * Records events in the log. It must be the LAST statement of its transaction: it takes the
 * log head's row lock, held until commit, which is what keeps positions in commit order.
 */
export async function appendEvents(tx: Transaction<Database>, events: readonly NewEvent[]): Promise<StoredEvent[]> {
  if (events.length === 0) return [];
  const now = new Date();
  const built = events.map((e) => {
    const event = create(EventSchema, {
      id: newId(now.getTime()),
      conversationId: e.conversationId ?? "",
      actorId: e.actorId,
      createdAt: timestampFromDate(now),
      kind: e.kind,
    });
    return { conversationId: e.conversationId, targetUserId: e.targetUserId ?? null, event, payload: toBinary(EventSchema, event) };
  });
  const seqs = built.map((b) => messageSeqs(b.event));
  // One round trip: bump the head and insert the rows at the positions it handed out.
  const result = await sql<{ first: string }>`
    with head as (
      update event_log_head set position = position + ${events.length} where shard = ${SHARD} returning position
    ), inserted as (
      insert into events (position, id, conversation_id, target_user_id, payload, created_at, message_seq, reply_to_seq)
      select head.position - ${events.length} + e.ord, e.id, e.conversation_id, e.target_user_id, e.payload, ${now}, e.message_seq, e.reply_to_seq
      from head, unnest(
        ${built.map((b) => b.event.id)}::uuid[], ${built.map((b) => b.conversationId)}::uuid[], ${built.map((b) => b.targetUserId)}::text[],
        ${built.map((b) => b.payload)}::bytea[], ${seqs.map((q) => q.message_seq)}::int8[], ${seqs.map((q) => q.reply_to_seq)}::int8[]
      ) with ordinality as e(id, conversation_id, target_user_id, payload, message_seq, reply_to_seq, ord)
      returning position
    )
    select min(position)::text as first from inserted`.execute(tx);
  const first = BigInt(result.rows[0]!.first);
  return built.map((b, i): StoredEvent => ({ position: first + BigInt(i), ...b }));
}

/** The message whose content the event carries and the one it quotes (so a delete can erase them). */
function messageSeqs(event: Event): { message_seq: string | null; reply_to_seq: string | null } {
  const { kind } = event;
  const message = kind.case === "messageCreated" || kind.case === "messageEdited" ? kind.value.message : undefined;
  return { message_seq: message?.seq.toString() ?? null, reply_to_seq: message?.replyToSeq?.toString() ?? null };
}

interface EventRow {
  position: string;
  conversation_id: string | null;
  target_user_id: string | null;
  payload: Uint8Array;
}

function toStored(row: EventRow): StoredEvent {
  return storedEventFrom(BigInt(row.position), row.conversation_id, row.target_user_id, row.payload);
}

/** The last position handed out. */
export async function readHead(db: Db): Promise<bigint> {
  const row = await db.selectFrom("event_log_head").select("position").where("shard", "=", SHARD).executeTakeFirstOrThrow();
  return BigInt(row.position);
}

/** Events in [from, to], in position order (for filling holes in live delivery). */
export async function readRange(db: Db, from: bigint, to: bigint): Promise<StoredEvent[]> {
  const rows = await db
    .selectFrom("events")
    .select(["position", "conversation_id", "target_user_id", "payload"])
    .where("position", ">=", from.toString())
    .where("position", "<=", to.toString())
    .orderBy("position")
    .execute();
  return rows.map(toStored);
}

/**
 * A page of candidate feed events after a position: those of the given conversations, plus
 * those addressed to the user. The caller filters them by membership at each position.
 */
export async function readFeedPage(db: Db, conversationIds: readonly string[], userId: string, after: bigint, limit: number): Promise<StoredEvent[]> {
  const result = await sql<EventRow>`
    select position, conversation_id, target_user_id, payload from (
      (select e.position, e.conversation_id, e.target_user_id, e.payload from events e
        where e.conversation_id = any(${[...conversationIds]}::uuid[]) and e.position > ${after.toString()}
        order by e.position limit ${limit})
      union
      (select e.position, e.conversation_id, e.target_user_id, e.payload from events e
        where e.target_user_id = ${userId} and e.position > ${after.toString()}
        order by e.position limit ${limit})
    ) page order by position limit ${limit}`.execute(db);
  return result.rows.map(toStored);
}

/** Events addressed to the user after a position (their own membership changes among them). */
export async function readEventsForUser(db: Db, userId: string, after: bigint): Promise<StoredEvent[]> {
  const rows = await db
    .selectFrom("events")
    .select(["position", "conversation_id", "target_user_id", "payload"])
    .where("target_user_id", "=", userId)
    .where("position", ">", after.toString())
    .orderBy("position")
    .execute();
  return rows.map(toStored);
}

/** When the event right after a position was committed, or null if it is not in the log. */
export async function findCreatedAt(db: Db, position: bigint): Promise<Date | null> {
  const row = await db.selectFrom("events").select("created_at").where("position", "=", position.toString()).executeTakeFirst();
  return row?.created_at ?? null;
}

/** The relay's checkpoint: everything up to it is in JetStream. */
export async function readRelayedThrough(db: Db): Promise<bigint> {
  const row = await db.selectFrom("event_log_head").select("relayed_through").where("shard", "=", SHARD).executeTakeFirstOrThrow();
  return BigInt(row.relayed_through);
}

export async function advanceRelayedThrough(db: Db, position: bigint): Promise<void> {
  await db
    .updateTable("event_log_head")
    .set((eb) => ({ relayed_through: eb.fn("greatest", [eb.ref("relayed_through"), eb.val(position.toString())]) }))
    .where("shard", "=", SHARD)
    .execute();
}

/** Deletes events older than the cutoff (the replay window); returns how many. */
export async function pruneEvents(db: Db, olderThan: Date): Promise<number> {
  const result = await db.deleteFrom("events").where("created_at", "<", olderThan).executeTakeFirst();
  return Number(result.numDeletedRows);
}

/**
 * Rewrites the stored payloads of the events that carry a message's content (its
 * message_created and message_edited events, and those of replies quoting it), e.g. to erase a
 * deleted message's text from the replay window. Runs in the transaction that changes the message.
 */
export async function rewriteMessageEvents(tx: Transaction<Database>, conversationId: string, seq: bigint, rewrite: (event: Event) => Event): Promise<void> {
  const rows = await tx
    .selectFrom("events")
    .select(["position", "payload"])
    .where("conversation_id", "=", conversationId)
    .where((eb) => eb.or([eb("message_seq", "=", seq.toString()), eb("reply_to_seq", "=", seq.toString())]))
    .execute();
  for (const row of rows) {
    const payload = toBinary(EventSchema, rewrite(fromBinary(EventSchema, row.payload)));
    await tx.updateTable("events").set({ payload }).where("position", "=", row.position).execute();
  }
}
