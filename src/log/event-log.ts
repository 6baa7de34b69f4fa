/**
 * The event log: the outbox table behind the feed, in partitions. appendEvents runs inside the
 * transaction that makes the change, so an event exists exactly when its change does.
 *
 * Each partition has its own head row and gapless positions in commit order; transactions that
 * write to different partitions never wait for each other.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { sql, type Kysely, type Transaction } from "kysely";
import { EventSchema, type Event } from "../../gen/parley/v1/event_pb.ts";
import type { Database } from "../db/schema.ts";
import { newId } from "../ids.ts";
import type { LogPosition } from "./log-position.ts";
import { eventPartitionKey, partitionOf } from "./partitions.ts";

type Db = Kysely<Database> | Transaction<Database>;

/** The deployment's log: its id (carried by cursors) and its partition count. */
export interface EventLogLayout {
  readonly logId: string;
  readonly partitions: number;
}

/** An event to record: where it goes and what it says. */
export interface NewEvent {
  /** The conversation whose members receive it (null for user-only events). */
  conversationId: string | null;
  /** A user who receives it even if not (or no longer) a member. */
  targetUserId?: string | null;
  actorId: string;
  kind: Event["kind"];
}

/** An event as committed: its partition and position there, plus the protobuf event (cursor not yet set). */
export interface StoredEvent {
  partition: number;
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
export function storedEventFrom(partition: number, position: bigint, conversationId: string | null, targetUserId: string | null, payload: Uint8Array): StoredEvent {
  let event: Event | undefined;
  return {
    partition,
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
 * head row of each partition it writes to, held until commit, which is what keeps positions in
 * commit order. The heads are locked in partition order, so two transactions that write to
 * several partitions cannot deadlock.
 */
export async function appendEvents(tx: Transaction<Database>, layout: EventLogLayout, events: readonly NewEvent[]): Promise<StoredEvent[]> {
  if (events.length === 0) return [];
  const now = new Date();
  const counts = new Map<number, number>();
  const built = events.map((e) => {
    const event = create(EventSchema, {
      id: newId(now.getTime()),
      conversationId: e.conversationId ?? "",
      actorId: e.actorId,
      createdAt: timestampFromDate(now),
      kind: e.kind,
    });
    const partition = partitionOf(eventPartitionKey(e), layout.partitions);
    // Where the event stands among this statement's events of its partition (1-based).
    const rank = (counts.get(partition) ?? 0) + 1;
    counts.set(partition, rank);
    return { partition, rank, conversationId: e.conversationId, targetUserId: e.targetUserId ?? null, event, payload: toBinary(EventSchema, event) };
  });
  const partitions = [...counts.keys()].sort((a, b) => a - b);
  const seqs = built.map((b) => messageSeqs(b.event));
  // One round trip: lock the heads in partition order, bump them and insert the rows at the
  // positions they handed out. `locked` takes every lock before the update writes a head:
  // the update joins it, so it is either read whole first or drives the join in its order.
  const result = await sql<{ partition: number; base: string }>`
    with locked as (
      select partition from event_log_partitions where partition = any(${partitions}::int2[]) order by partition for update
    ), head as (
      update event_log_partitions h set position = h.position + c.n
      from unnest(${partitions}::int2[], ${partitions.map((p) => counts.get(p)!)}::int8[]) as c(partition, n)
      join locked on locked.partition = c.partition
      where h.partition = c.partition
      returning h.partition, h.position - c.n as base
    ), inserted as (
      insert into events (partition, position, id, conversation_id, target_user_id, payload, created_at, message_seq, reply_to_seq)
      select e.partition, head.base + e.rank, e.id, e.conversation_id, e.target_user_id, e.payload, ${now}, e.message_seq, e.reply_to_seq
      from unnest(
        ${built.map((b) => b.partition)}::int2[], ${built.map((b) => b.rank)}::int8[], ${built.map((b) => b.event.id)}::uuid[],
        ${built.map((b) => b.conversationId)}::uuid[], ${built.map((b) => b.targetUserId)}::text[], ${built.map((b) => b.payload)}::bytea[],
        ${seqs.map((q) => q.message_seq)}::int8[], ${seqs.map((q) => q.reply_to_seq)}::int8[]
      ) as e(partition, rank, id, conversation_id, target_user_id, payload, message_seq, reply_to_seq)
      join head on head.partition = e.partition
      returning 1
    )
    select head.partition, head.base::text as base from head`.execute(tx);
  if (result.rows.length !== partitions.length) throw new Error("the event log has no head row for a partition (EVENT_PARTITIONS changed without `npm run event-partitions`?)");
  const bases = new Map(result.rows.map((row) => [Number(row.partition), BigInt(row.base)]));
  return built.map(({ partition, rank, conversationId, targetUserId, event, payload }): StoredEvent => ({
    partition,
    position: bases.get(partition)! + BigInt(rank),
    conversationId,
    targetUserId,
    event,
    payload,
  }));
}

/**
 * The message the event is about (whose content it carries, for message_created and
 * message_edited) and the one it quotes: so a delete can erase them, and so a replay and the
 * retention sweeper can leave out or scrub the events of a message past retention.
 */
function messageSeqs(event: Event): { message_seq: string | null; reply_to_seq: string | null } {
  const { kind } = event;
  switch (kind.case) {
    case "messageCreated":
    case "messageEdited": {
      const message = kind.value.message;
      return { message_seq: message?.seq.toString() ?? null, reply_to_seq: message?.replyToSeq?.toString() ?? null };
    }
    case "messageDeleted":
    case "reactionAdded":
    case "reactionRemoved":
      return { message_seq: kind.value.messageSeq.toString(), reply_to_seq: null };
    default:
      return { message_seq: null, reply_to_seq: null };
  }
}

interface EventRow {
  partition: number;
  position: string;
  conversation_id: string | null;
  target_user_id: string | null;
  payload: Uint8Array;
}

const EVENT_COLUMNS = ["partition", "position", "conversation_id", "target_user_id", "payload"] as const;

function toStored(row: EventRow): StoredEvent {
  return storedEventFrom(Number(row.partition), BigInt(row.position), row.conversation_id, row.target_user_id, row.payload);
}

/** The last position handed out in each partition. */
export async function readHeads(db: Db): Promise<LogPosition> {
  const rows = await db.selectFrom("event_log_partitions").select(["partition", "position"]).orderBy("partition").execute();
  return rows.map((row) => BigInt(row.position));
}

/** One partition's events in [from, to], in position order (for filling holes in live delivery). */
export async function readRange(db: Db, partition: number, from: bigint, to: bigint): Promise<StoredEvent[]> {
  const rows = await db
    .selectFrom("events")
    .select(EVENT_COLUMNS)
    .where("partition", "=", partition)
    .where("position", ">=", from.toString())
    .where("position", "<=", to.toString())
    .orderBy("position")
    .execute();
  return rows.map(toStored);
}

/**
 * A feed event as a replay reads it: `withheld` when it is about a message past retention (the
 * replay moves past it without sending it); its quote of a message past retention is already
 * taken out of the payload.
 */
export interface FeedPageEvent extends StoredEvent {
  withheld: boolean;
}

/**
 * A page of candidate feed events after a log position: those of the given conversations, plus
 * those addressed to the user, ordered by (partition, position). The caller filters them by
 * membership at each position (a conversation's events, its membership changes among them, all
 * stand in one partition, so this order is their log order).
 *
 * `deadlines` holds the retention deadline of each candidate conversation that has one (created
 * at or before it: past retention). An event about a message (message_seq) that is past it, or
 * gone, comes back withheld; one quoting such a message (reply_to_seq) comes back without the
 * quote. Rows are never left out, so pages stay full and positions move past every event. With
 * no deadlines the query is the plain one: the check costs nothing where no retention applies,
 * and otherwise one primary-key probe per message event.
 */
export async function readFeedPage(
  db: Db,
  conversationIds: readonly string[],
  userId: string,
  after: LogPosition,
  limit: number,
  deadlines: ReadonlyMap<string, Date> = new Map(),
): Promise<FeedPageEvent[]> {
  const afterArray = after.map(String);
  const columns = deadlines.size === 0
    ? sql`e.partition, e.position, e.conversation_id, e.target_user_id, e.payload`
    : sql`e.partition, e.position, e.conversation_id, e.target_user_id, e.payload, e.message_seq, e.reply_to_seq`;
  const page = sql`
      (select ${columns} from events e
        where e.conversation_id = any(${[...conversationIds]}::uuid[]) and e.position > (${afterArray}::int8[])[e.partition + 1]
        order by e.partition, e.position limit ${limit})
      union
      (select ${columns} from events e
        where e.target_user_id = ${userId} and e.position > (${afterArray}::int8[])[e.partition + 1]
        order by e.partition, e.position limit ${limit})`;
  if (deadlines.size === 0) {
    const result = await sql<EventRow>`
      select partition, position, conversation_id, target_user_id, payload from (${page}) page
      order by partition, position limit ${limit}`.execute(db);
    return result.rows.map((row) => ({ ...toStored(row), withheld: false }));
  }
  const ids = [...deadlines.keys()];
  const result = await sql<EventRow & { withheld: boolean; quote_gone: boolean }>`
    select p.partition, p.position, p.conversation_id, p.target_user_id, p.payload,
      case when p.message_seq is null or r.deadline is null then false
        else not exists (select 1 from messages m
          where m.conversation_id = p.conversation_id and m.seq = p.message_seq and m.created_at > r.deadline) end as withheld,
      case when p.reply_to_seq is null or r.deadline is null then false
        else not exists (select 1 from messages q
          where q.conversation_id = p.conversation_id and q.seq = p.reply_to_seq and q.created_at > r.deadline) end as quote_gone
    from (select * from (${page}) u order by partition, position limit ${limit}) p
    left join unnest(${ids}::uuid[], ${ids.map((id) => deadlines.get(id)!.toISOString())}::timestamptz[]) as r(id, deadline)
      on r.id = p.conversation_id
    order by p.partition, p.position`.execute(db);
  return result.rows.map((row) => {
    const payload = row.quote_gone && !row.withheld ? withoutQuote(row.payload) : row.payload;
    return { ...toStored({ ...row, payload }), withheld: row.withheld };
  });
}

/** The payload with the quoted message's preview taken out of the message it carries. */
function withoutQuote(payload: Uint8Array): Uint8Array {
  const event = fromBinary(EventSchema, payload);
  const { kind } = event;
  if ((kind.case !== "messageCreated" && kind.case !== "messageEdited") || !kind.value.message?.replyTo) return payload;
  kind.value.message.replyTo = undefined;
  return toBinary(EventSchema, event);
}

/** Events addressed to the user after a log position (their own membership changes among them). */
export async function readEventsForUser(db: Db, userId: string, after: LogPosition): Promise<StoredEvent[]> {
  const result = await sql<EventRow>`
    select partition, position, conversation_id, target_user_id, payload from events e
    where e.target_user_id = ${userId} and e.position > (${after.map(String)}::int8[])[e.partition + 1]
    order by e.partition, e.position`.execute(db);
  return result.rows.map(toStored);
}

/**
 * When the event right after `after` was committed, in each partition where the log has moved
 * past it; a partition whose next event is no longer in the log is reported with null.
 */
export async function findNextCreatedAt(db: Db, after: LogPosition, heads: LogPosition): Promise<(Date | null)[]> {
  const behind = after.flatMap((position, partition) => (position < heads[partition]! ? [partition] : []));
  if (behind.length === 0) return [];
  const result = await sql<{ created_at: Date | null }>`
    select e.created_at from unnest(${behind}::int2[], ${behind.map((p) => String(after[p]! + 1n))}::int8[]) as next(partition, position)
    left join events e on e.partition = next.partition and e.position = next.position`.execute(db);
  return result.rows.map((row) => row.created_at);
}

/** The relay's checkpoint in each partition: everything up to it is in JetStream. */
export async function readRelayedThrough(db: Db): Promise<LogPosition> {
  const rows = await db.selectFrom("event_relay_checkpoints").select(["partition", "relayed_through"]).orderBy("partition").execute();
  return rows.map((row) => BigInt(row.relayed_through));
}

export async function advanceRelayedThrough(db: Db, through: LogPosition): Promise<void> {
  await sql`
    update event_relay_checkpoints h set relayed_through = greatest(h.relayed_through, t.position)
    from unnest(${through.map((_, i) => i)}::int2[], ${through.map(String)}::int8[]) as t(partition, position)
    where h.partition = t.partition and h.relayed_through < t.position`.execute(db);
}

/** Deletes events older than the cutoff (the replay window); returns how many. */
export async function pruneEvents(db: Db, olderThan: Date): Promise<number> {
  const result = await db.deleteFrom("events").where("created_at", "<", olderThan).executeTakeFirst();
  return Number(result.numDeletedRows);
}

/**
 * Rewrites the stored payloads of the events that carry the content of some messages of one
 * conversation (their message_created and message_edited events, and those of replies quoting
 * them), e.g. to erase deleted messages' text from the replay window. Positions stay as they
 * are, so the log stays gapless. Runs in the transaction that changes the messages.
 */
export async function rewriteMessageEvents(tx: Transaction<Database>, conversationId: string, seqs: readonly bigint[], rewrite: (event: Event) => Event): Promise<void> {
  if (seqs.length === 0) return;
  const asked = seqs.map(String);
  const rows = await tx
    .selectFrom("events")
    .select(["partition", "position", "payload"])
    .where("conversation_id", "=", conversationId)
    .where((eb) => eb.or([eb("message_seq", "in", asked), eb("reply_to_seq", "in", asked)]))
    .execute();
  await replacePayloads(
    tx,
    rows.flatMap((row) => {
      const payload = toBinary(EventSchema, rewrite(fromBinary(EventSchema, row.payload)));
      // Events about the message that carry no content (reactions) come back as they were.
      return Buffer.from(payload).equals(row.payload) ? [] : [{ partition: row.partition, position: row.position, payload }];
    }),
  );
}

/** Writes new payloads (and clears the routing to a user, when asked) of stored events, in one statement. */
async function replacePayloads(tx: Db, rows: readonly { partition: number; position: string; payload: Uint8Array }[], { unroute = false } = {}): Promise<void> {
  if (rows.length === 0) return;
  await sql`
    update events e set payload = r.payload ${unroute ? sql`, target_user_id = null` : sql``}
    from unnest(${rows.map((r) => r.partition)}::int2[], ${rows.map((r) => r.position)}::int8[], ${rows.map((r) => r.payload)}::bytea[]) as r(partition, position, payload)
    where e.partition = r.partition and e.position = r.position`.execute(tx);
}

/**
 * Stops routing stored events to a user whose account was erased, up to `limit` of them a
 * call; returns how many it changed. A conversation's events stay (its members still see
 * them) but no longer name the user as their target, so a new account with the same id
 * replays none of them. Events for the user alone (notifications, story and device events,
 * to-device messages) keep their position, so the log stays gapless, but lose what they said.
 */
export async function unrouteUserEvents(db: Db, userId: string, limit: number): Promise<number> {
  const rows = await db
    .selectFrom("events")
    .select(["partition", "position", "id", "conversation_id", "payload", "created_at"])
    .where("target_user_id", "=", userId)
    .orderBy("partition")
    .orderBy("position")
    .limit(limit)
    .execute();
  await replacePayloads(
    db,
    rows.map((row) => ({
      partition: row.partition,
      position: row.position,
      payload: row.conversation_id !== null ? row.payload : toBinary(EventSchema, create(EventSchema, { id: row.id, createdAt: timestampFromDate(row.created_at) })),
    })),
    { unroute: true },
  );
  return rows.length;
}

/**
 * Rewrites events addressed to these users alone (not to a conversation) whose encoding
 * contains `needle` (a cheap byte filter before decoding, e.g. an author's id): `rewrite`
 * returns the event to store instead, or null to leave it. Positions stay. Returns how many
 * it rewrote. Reads the index events_by_target_user, one range per user.
 */
export async function rewriteUserEvents(db: Db, targetUserIds: readonly string[], needle: string, rewrite: (event: Event) => Event | null): Promise<number> {
  if (targetUserIds.length === 0) return 0;
  const rows = await sql<{ partition: number; position: string; payload: Uint8Array }>`
    select partition, position, payload from events
    where target_user_id = any(${[...targetUserIds]}::text[]) and conversation_id is null
      and position(${new TextEncoder().encode(needle)}::bytea in payload) > 0`.execute(db);
  const changed = rows.rows.flatMap((row) => {
    const event = rewrite(fromBinary(EventSchema, row.payload));
    return event ? [{ partition: row.partition, position: row.position, payload: toBinary(EventSchema, event) }] : [];
  });
  await replacePayloads(db, changed);
  return changed.length;
}

/**
 * Scrubs the stored events of messages that passed retention (the sweeper deletes the messages
 * in the same transaction): every event about one of them becomes a bare event (id,
 * conversation and time; no kind, no actor), which no stream delivers, and the events quoting
 * one lose the quote. The rows stay, so each partition's positions stay gapless for the feed
 * hub and for cursors. Returns how many rows changed.
 */
export async function scrubMessageEvents(tx: Transaction<Database>, conversationId: string, seqs: readonly string[]): Promise<number> {
  if (seqs.length === 0) return 0;
  const doomed = new Set(seqs);
  const rows = await sql<{ partition: number; position: string; payload: Uint8Array; message_seq: string | null }>`
    select partition, position, payload, message_seq from events
    where conversation_id = ${conversationId} and (message_seq = any(${seqs}::int8[]) or reply_to_seq = any(${seqs}::int8[]))`.execute(tx);
  const changed = rows.rows.map((row) => {
    const event = fromBinary(EventSchema, row.payload);
    if (row.message_seq !== null && doomed.has(String(row.message_seq))) {
      const bare = create(EventSchema, { id: event.id, conversationId: event.conversationId, ...(event.createdAt && { createdAt: event.createdAt }) });
      return { partition: row.partition, position: row.position, payload: toBinary(EventSchema, bare) };
    }
    return { partition: row.partition, position: row.position, payload: withoutQuote(row.payload) };
  });
  if (changed.length === 0) return 0;
  await sql`
    update events e set payload = c.payload,
      reply_to_seq = case when e.reply_to_seq = any(${seqs}::int8[]) then null else e.reply_to_seq end
    from unnest(${changed.map((c) => c.partition)}::int2[], ${changed.map((c) => String(c.position))}::int8[], ${changed.map((c) => c.payload)}::bytea[])
      as c(partition, position, payload)
    where e.partition = c.partition and e.position = c.position`.execute(tx);
  return changed.length;
}
