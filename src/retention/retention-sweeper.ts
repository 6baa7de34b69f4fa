/**
 * The retention sweeper. Reads already hide what passed retention (src/retention/
 * retention-policy.ts); this deletes it, on the nodes that run the consumers, every
 * RETENTION_SWEEP_INTERVAL_SECONDS:
 *   1. the conversations with a retention (or a floor) of their own, walked in id order: each
 *      whose oldest message or attachment is due is drained, from its oldest message;
 *   2. with a deployment retention, the oldest messages and attachments of any conversation,
 *      by age (indexes on created_at).
 * Per batch of messages: the search index forgets the plain-text ones (tombstones, so a late
 * replayed event cannot bring one back); then one transaction takes the cluster-wide sweeper
 * lock (a transaction-level advisory lock: a node that cannot get it leaves the round to the
 * node that has it), locks the conversations in id order as sends do, deletes the messages with
 * their edits, reactions and counts, blind-index tokens and moderation entries, fixes the
 * unread counters, and scrubs their content out of the event log (the rows stay, bare, so
 * positions stay gapless). Attachments: bytes first, then rows (as stories do), so a failure
 * never strands a file. Every step rechecks the deadline under its own statement and is
 * idempotent: a repeated or concurrent sweep deletes nothing twice.
 */
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { Database } from "../db/schema.ts";
import { scrubMessageEvents } from "../log/event-log.ts";
import type { BlobStore } from "../media/blob-store.ts";
import type { SearchIndex } from "../search/search-index.ts";
import type { RetentionCutoff, RetentionPolicy } from "./retention-policy.ts";
import * as repo from "./retention-repository.ts";

/** Messages (or attachments) per batch: one transaction each. */
const BATCH = 500;
/** Conversations with a retention of their own, probed per query. */
const CONVERSATION_PAGE = 200;
/** At most this many batches per round, so one round stays bounded; the next picks up the rest. */
const MAX_BATCHES = 200;
/** Names the sweeper's advisory lock among PostgreSQL's (the migration lock is another constant). */
const SWEEP_LOCK_ID = 7_462_315_011;

/** What one round deleted. */
export interface SweepResult {
  messages: number;
  /** Event log rows scrubbed (events about the deleted messages, and quotes of them). */
  events: number;
  attachments: number;
  /** False when another node held the sweeper lock and this round left the work to it. */
  complete: boolean;
}

export interface RetentionSweeperOptions {
  db: Kysely<Database>;
  policy: RetentionPolicy;
  index: SearchIndex;
  blobs: BlobStore;
  logger: Logger;
  intervalMs: number;
}

/** Thrown inside a round when another node holds the sweeper lock. */
class SweepBusy extends Error {}

export class RetentionSweeper {
  readonly #o: RetentionSweeperOptions;
  #timer: NodeJS.Timeout | null = null;
  #sweeping: Promise<void> | null = null;

  constructor(options: RetentionSweeperOptions) {
    this.#o = options;
  }

  /** Sweeps every interval, the first time one interval after start (reads hide what is due meanwhile). */
  start(): void {
    this.#timer = setInterval(() => this.#sweepSoon(), this.#o.intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#sweeping;
  }

  /** One round at `now`: deletes everything past retention then (up to the round's bound). */
  async sweep(now = new Date()): Promise<SweepResult> {
    const cutoff = this.#o.policy.at(now);
    const result: SweepResult = { messages: 0, events: 0, attachments: 0, complete: true };
    const budget = { batches: MAX_BATCHES };
    try {
      await this.#sweepOwnRetentions(cutoff, result, budget);
      const deadline = cutoff.deploymentDeadline();
      if (deadline !== null) {
        await this.#drainMessages(() => repo.findDueByAge(this.#o.db, deadline, BATCH), cutoff, result, budget);
        await this.#drainAttachments(() => repo.findDueAttachments(this.#o.db, null, deadline, BATCH), cutoff, result, budget);
      }
    } catch (error) {
      if (!(error instanceof SweepBusy)) throw error;
      result.complete = false;
    }
    return result;
  }

  async #sweepOwnRetentions(cutoff: RetentionCutoff, result: SweepResult, budget: { batches: number }): Promise<void> {
    const { db } = this.#o;
    for (let after: string | null = null; ; ) {
      const page = await repo.findOwnRetentionConversations(db, cutoff, after, CONVERSATION_PAGE);
      for (const conversation of page) {
        const deadline = conversation.deadline;
        if (conversation.messages_due) await this.#drainMessages(() => repo.findDueInConversation(db, conversation.id, deadline, BATCH), cutoff, result, budget);
        if (conversation.media_due) {
          await this.#drainAttachments(() => repo.findDueAttachments(db, conversation.id, deadline, BATCH), cutoff, result, budget);
        }
        if (conversation.own === null && conversation.floor !== null) await repo.clearSpentFloor(db, conversation.id, conversation.floor);
      }
      // Out of batches: the rest of the walk waits for the next round.
      if (page.length < CONVERSATION_PAGE || budget.batches <= 0) return;
      after = page.at(-1)!.id;
    }
  }

  async #drainMessages(find: () => Promise<repo.MessageAt[]>, cutoff: RetentionCutoff, result: SweepResult, budget: { batches: number }): Promise<void> {
    while (budget.batches > 0) {
      budget.batches--;
      const due = await find();
      if (due.length === 0) return;
      const purged = await this.#purge(due, cutoff);
      result.messages += purged.messages;
      result.events += purged.events;
      // Fewer than found: the rest is not deletable now (its retention changed); next round.
      if (due.length < BATCH || purged.messages < due.length) return;
    }
  }

  async #drainAttachments(find: () => Promise<repo.AttachmentAt[]>, cutoff: RetentionCutoff, result: SweepResult, budget: { batches: number }): Promise<void> {
    while (budget.batches > 0) {
      budget.batches--;
      const due = await find();
      if (due.length === 0) return;
      await Promise.all(due.map((a) => this.#o.blobs.delete(a.id)));
      const deleted = await repo.deleteAttachments(this.#o.db, due.map((a) => a.id), cutoff);
      result.attachments += deleted.length;
      if (due.length < BATCH || deleted.length < due.length) return;
    }
  }

  /** Deletes one batch of messages (see the module comment); throws SweepBusy when another node sweeps. */
  async #purge(due: readonly repo.MessageAt[], cutoff: RetentionCutoff): Promise<{ messages: number; events: number }> {
    const { db, index } = this.#o;
    // The index first: if the transaction then fails, the next round finds the messages again
    // and forgets them again (idempotent), whereas the other order could leave entries behind.
    const indexed = await repo.findIndexed(db, due);
    if (indexed.length > 0) {
      await index.apply({ upserts: [], removals: indexed.map((m) => ({ conversationId: m.conversation_id, seq: BigInt(m.seq), messageId: m.id })) });
    }
    return db.transaction().execute(async (tx) => {
      if (!(await repo.tryLockSweep(tx, SWEEP_LOCK_ID))) throw new SweepBusy();
      await repo.lockConversationsInOrder(tx, [...new Set(due.map((m) => m.conversation_id))]);
      const gone = await repo.purgeMessages(tx, due, cutoff);
      const byConversation = new Map<string, string[]>();
      for (const m of gone) byConversation.set(m.conversation_id, [...(byConversation.get(m.conversation_id) ?? []), m.seq]);
      let events = 0;
      for (const [conversationId, seqs] of byConversation) events += await scrubMessageEvents(tx, conversationId, seqs);
      return { messages: gone.length, events };
    });
  }

  #sweepSoon(): void {
    if (this.#sweeping) return;
    const started = Date.now();
    this.#sweeping = this.sweep()
      .then((r) => {
        if (r.messages > 0 || r.attachments > 0) {
          this.#o.logger.info({ ...r, ms: Date.now() - started }, "retention sweep deleted messages past retention");
        } else if (!r.complete) {
          this.#o.logger.debug("retention sweep left the round to the node holding the sweeper lock");
        }
      })
      .catch((error: unknown) => this.#o.logger.warn({ err: error }, "retention sweep failed; retrying at the next interval"))
      .finally(() => (this.#sweeping = null));
  }
}
