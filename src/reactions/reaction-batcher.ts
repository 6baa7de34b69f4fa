/**
 * Group commit for AddReaction / RemoveReaction. When a thousand users react to one message
 * at once, one transaction per reaction would queue them all behind the message's count row
 * (and the event log head), each holding it for a full commit. Instead, concurrent commands
 * are queued and written together: per batch, one transaction
 *   1. checks every (conversation, user) membership and (conversation, seq) message, locking
 *      each message row so batches touching the same message take turns (in seq order);
 *   2. inserts (`on conflict do nothing returning`) and deletes (`returning`) the reactions,
 *      set-based, so a repeated add or a missing remove changes nothing, within the batch and
 *      across calls;
 *   3. adds the net change to each (message, emoji) count with one upsert;
 *   4. reads the reactions every caller will see in their response;
 *   5. appends one ReactionAdded / ReactionRemoved event per effective change, last.
 * After commit the stored events go to `onCommitted` (the app publishes them). Queueing,
 * batching and failure isolation are GroupCommit's (src/db/group-commit.ts).
 *
 * A command on a message the user may not see fails alone with NotFoundError("message").
 * Within a batch, commands take effect in queue order;
 * concurrent batches on one message take turns in the order they get its lock, so calls that
 * overlap in time have no defined order between them (the counts and events agree either way).
 */
import { create } from "@bufbuild/protobuf";
import type { Kysely, Transaction } from "kysely";
import { ReactionAddedSchema, ReactionRemovedSchema } from "../../gen/parley/v1/event_pb.ts";
import type { ReactionSummary } from "../../gen/parley/v1/message_pb.ts";
import { GroupCommit, uniqueBy, type BatchOutcome } from "../db/group-commit.ts";
import type { Database } from "../db/schema.ts";
import { NotFoundError } from "../errors.ts";
import { appendEvents, type EventLogLayout, type NewEvent, type StoredEvent } from "../log/event-log.ts";
import { partitionOf } from "../log/partitions.ts";
import { toReactionSummaries } from "./reaction-mapper.ts";
import * as repo from "./reaction-repository.ts";
import type { ReactionKey } from "./reaction-repository.ts";
import { RetentionPolicy } from "../retention/retention-policy.ts";

/** A validated reaction change, ready to be stored. */
export interface ReactionCommand {
  op: "add" | "remove";
  conversationId: string;
  seq: bigint;
  emoji: string;
  userId: string;
}

/** What one command came to, for its caller. */
export interface ReactionOutcome {
  /** True when the command changed something (false: already there / not there). */
  changed: boolean;
  /** The message's reactions after the batch, as this caller sees them. */
  reactions: ReactionSummary[];
}

/**
 * Receives the events of each committed batch that has any, in log order, before the callers
 * get their results. It should not throw (publish failures are the publisher's to handle, and
 * the feed fills any hole from PostgreSQL); if it does, the error becomes a process warning.
 */
export type OnReactionsCommitted = (stored: StoredEvent[]) => void;

export interface ReactionBatcherOptions {
  /** Most commands written by one transaction. */
  maxBatch?: number;
  /** Most batch transactions running at once (each holds a pool connection). */
  maxInFlight?: number;
  /** The deployment's retention: a message past retention takes no reactions (NOT_FOUND). None by default. */
  retention?: RetentionPolicy;
}

type Outcome = BatchOutcome<ReactionOutcome>;

export class ReactionBatcher {
  readonly #queue: GroupCommit<ReactionCommand, ReactionOutcome>;
  readonly #log: EventLogLayout;
  readonly #retention: RetentionPolicy;

  constructor(db: Kysely<Database>, log: EventLogLayout, onCommitted: OnReactionsCommitted, { retention = new RetentionPolicy(null), ...options }: ReactionBatcherOptions = {}) {
    this.#log = log;
    this.#retention = retention;
    const partitionOfReaction = (command: ReactionCommand) => partitionOf(command.conversationId, log.partitions);
    this.#queue = new GroupCommit(db, (tx, commands) => this.#write(tx, commands), partitionOfReaction, { ...options, onCommitted });
  }

  /** Applies the command (in queue order with every other) and returns what it came to. */
  submit(command: ReactionCommand): Promise<ReactionOutcome> {
    return this.#queue.submit(command);
  }

  /** Resolves once every queued command has been written. */
  drain(): Promise<void> {
    return this.#queue.drain();
  }

  async #write(tx: Transaction<Database>, commands: ReactionCommand[]): Promise<{ outcomes: Outcome[]; events: StoredEvent[] }> {
    const keys = commands.map((c): ReactionKey => ({ conversationId: c.conversationId, seq: c.seq.toString(), emoji: c.emoji, userId: c.userId }));
    const allowed = await repo.lockReactionTargets(tx, uniqueBy(keys, repo.targetKey), this.#retention.at(new Date()));
    const changed: boolean[] = commands.map(() => false);
    const live = commands.map((_, i) => i).filter((i) => allowed.has(repo.targetKey(keys[i]!)));

    // Effective changes in queue order. A round holds commands whose keys see one kind of
    // operation only, so its insert and delete statements can run set-based; a key added and
    // removed within one batch (a quick toggle) starts a new round.
    const changes: { index: number; delta: 1 | -1 }[] = [];
    for (const round of rounds(live, (i) => repo.reactionKey(keys[i]!), (i) => commands[i]!.op)) {
      const adds = round.filter((i) => commands[i]!.op === "add");
      const removes = round.filter((i) => commands[i]!.op === "remove");
      const inserted = new Set((await repo.insertReactions(tx, uniqueBy(adds.map((i) => keys[i]!), repo.reactionKey))).map(repo.reactionKey));
      const deleted = new Set((await repo.deleteReactions(tx, uniqueBy(removes.map((i) => keys[i]!), repo.reactionKey))).map(repo.reactionKey));
      for (const i of round) {
        const key = repo.reactionKey(keys[i]!);
        const effective = commands[i]!.op === "add" ? inserted : deleted;
        if (!effective.delete(key)) continue; // the first command on a key takes the change; repeats change nothing
        changed[i] = true;
        changes.push({ index: i, delta: commands[i]!.op === "add" ? 1 : -1 });
      }
    }

    // One upsert per (message, emoji) with the net delta, then the count after each change,
    // walking back from the final count.
    const net = new Map<string, repo.CountDelta>();
    for (const { index, delta } of changes) {
      const k = keys[index]!;
      const entry = net.get(repo.countKey(k)) ?? { conversationId: k.conversationId, seq: k.seq, emoji: k.emoji, delta: 0 };
      entry.delta += delta;
      net.set(repo.countKey(k), entry);
    }
    const finalCounts = await repo.applyCountDeltas(tx, [...net.values()]);
    const running = new Map(finalCounts);
    const countsAfter: bigint[] = new Array<bigint>(changes.length);
    for (let j = changes.length - 1; j >= 0; j--) {
      const key = repo.countKey(keys[changes[j]!.index]!);
      const after = running.get(key)!;
      countsAfter[j] = after;
      running.set(key, after - BigInt(changes[j]!.delta));
    }

    const summaries = toReactionSummaries(await repo.findReactionSummaries(tx, uniqueBy(live.map((i) => keys[i]!), repo.targetKey)));
    const events = changes.map(({ index, delta }, j): NewEvent => {
      const c = commands[index]!;
      const payload = { messageSeq: c.seq, emoji: c.emoji, userId: c.userId, count: countsAfter[j]! };
      return {
        conversationId: c.conversationId,
        actorId: c.userId,
        kind:
          delta === 1
            ? { case: "reactionAdded", value: create(ReactionAddedSchema, payload) }
            : { case: "reactionRemoved", value: create(ReactionRemovedSchema, payload) },
      };
    });
    const stored = await appendEvents(tx, this.#log, events); // last: it takes the partition head's lock until commit

    const outcomes = commands.map((_, i): Outcome => {
      if (!allowed.has(repo.targetKey(keys[i]!))) return { error: new NotFoundError("message") };
      return { value: { changed: changed[i]!, reactions: summaries.get(repo.targetKey(keys[i]!)) ?? [] } };
    });
    return { outcomes, events: stored };
  }
}

/**
 * Splits indexes (in order) into consecutive rounds in which no key sees both operations.
 */
function rounds(indexes: number[], keyOf: (i: number) => string, opOf: (i: number) => string): number[][] {
  const result: number[][] = [];
  let current: number[] = [];
  let ops = new Map<string, string>();
  for (const i of indexes) {
    const key = keyOf(i);
    const seen = ops.get(key);
    if (seen !== undefined && seen !== opOf(i)) {
      result.push(current);
      current = [];
      ops = new Map();
    }
    ops.set(key, opOf(i));
    current.push(i);
  }
  if (current.length > 0) result.push(current);
  return result;
}

